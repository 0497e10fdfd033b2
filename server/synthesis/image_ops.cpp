#include "server/synthesis/image_ops.h"

#include <algorithm>
#include <cmath>

namespace stimloop::synthesis {
namespace {

// scipy's 'reflect' index: the edge sample is repeated (d c b a | a b c d | d c b a).
int reflect(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

}  // namespace

std::vector<double> gaussian_kernel(double sigma) {
  const int radius = static_cast<int>(4.0 * sigma + 0.5);
  std::vector<double> k(2 * radius + 1);
  double total = 0.0;
  for (int i = -radius; i <= radius; ++i) {
    k[i + radius] = std::exp(-0.5 * i * i / (sigma * sigma));
    total += k[i + radius];
  }
  for (double& v : k) v /= total;
  return k;
}

void gaussian_blur(std::span<double> image, const ImageShape& s, double sigma,
                   std::vector<double>& scratch) {
  if (sigma <= 0.0) return;
  const std::vector<double> k = gaussian_kernel(sigma);
  const int radius = static_cast<int>(k.size() / 2);
  scratch.resize(image.size());
  // Along rows (y), into scratch.
  for (int y = 0; y < s.h; ++y) {
    for (int x = 0; x < s.w; ++x) {
      for (int c = 0; c < s.c; ++c) {
        double acc = 0.0;
        for (int t = -radius; t <= radius; ++t) {
          acc += k[t + radius] * image[(std::int64_t{reflect(y + t, s.h)} * s.w + x) * s.c + c];
        }
        scratch[(std::int64_t{y} * s.w + x) * s.c + c] = acc;
      }
    }
  }
  // Along columns (x), back into the image.
  for (int y = 0; y < s.h; ++y) {
    for (int x = 0; x < s.w; ++x) {
      for (int c = 0; c < s.c; ++c) {
        double acc = 0.0;
        for (int t = -radius; t <= radius; ++t) {
          acc += k[t + radius] * scratch[(std::int64_t{y} * s.w + reflect(x + t, s.w)) * s.c + c];
        }
        image[(std::int64_t{y} * s.w + x) * s.c + c] = acc;
      }
    }
  }
}

void clip_to_valid(std::span<double> image, const std::array<float, 3>& means) {
  for (std::size_t i = 0; i < image.size(); ++i) {
    const double mean = means[i % 3];
    image[i] = std::clamp(image[i], -mean, 255.0 - mean);
  }
}

void to_grayscale(std::span<double> image, const std::array<float, 3>& means) {
  for (std::size_t p = 0; p + 2 < image.size(); p += 3) {
    const double gray =
        (image[p] + means[0] + image[p + 1] + means[1] + image[p + 2] + means[2]) / 3.0;
    for (int c = 0; c < 3; ++c) image[p + c] = gray - means[c];
  }
}

std::vector<std::uint8_t> quantize(std::span<const double> image,
                                   const std::array<float, 3>& means) {
  std::vector<std::uint8_t> raw(image.size());
  for (std::size_t i = 0; i < image.size(); ++i) {
    const double v = std::nearbyint(image[i] + means[i % 3]);
    raw[i] = static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
  }
  return raw;
}

void dequantize(std::span<const std::uint8_t> raw, const std::array<float, 3>& means,
                std::span<double> image) {
  for (std::size_t i = 0; i < raw.size(); ++i) image[i] = double(raw[i]) - means[i % 3];
}

}  // namespace stimloop::synthesis
