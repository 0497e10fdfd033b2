// Image operations of the synthesis step, on one re-centered image (h x w x 3, channels-last,
// double precision: the authors' algorithm keeps the image state in float64).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace stimloop::synthesis {

struct ImageShape {
  int h = 0, w = 0, c = 3;
  std::int64_t size() const { return std::int64_t{h} * w * c; }
};

// Gaussian blur of each channel along the two spatial axes, exactly as scipy.ndimage's
// gaussian_filter(sigma, truncate=4.0, mode='reflect') with sigma 0 on the channel axis:
// radius = int(4 * sigma + 0.5), weights exp(-x^2 / (2 sigma^2)) normalised to sum 1, and
// 'reflect' borders (d c b a | a b c d | d c b a). `scratch` is reused between calls.
void gaussian_blur(std::span<double> image, const ImageShape& shape, double sigma,
                   std::vector<double>& scratch);

// The 1-D kernel above (for tests and for the CUDA path).
std::vector<double> gaussian_kernel(double sigma);
// The same into k, reusing its storage.
void gaussian_kernel_into(double sigma, std::vector<double>& k);

// Clips each channel to the re-centered valid range [-mean_c, 255 - mean_c].
void clip_to_valid(std::span<double> image, const std::array<float, 3>& means);

// Replaces each pixel's channels by their mean in raw (0..255) units, i.e. a gray image.
void to_grayscale(std::span<double> image, const std::array<float, 3>& means);

// Rounds a re-centered image to the nearest 8-bit RGB (clamped to 0..255).
std::vector<std::uint8_t> quantize(std::span<const double> image,
                                   const std::array<float, 3>& means);
// 8-bit RGB back to the re-centered float image the model sees.
void dequantize(std::span<const std::uint8_t> raw, const std::array<float, 3>& means,
                std::span<double> image);

}  // namespace stimloop::synthesis
