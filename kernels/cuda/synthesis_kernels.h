// Kernels of the cowley2026 step on the device (docs/domain.md). Image state is float64, as in the
// authors' code and the host loop (server/synthesis/); the network sees a float32 copy written by
// the same kernels.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>

#include "common/status.h"

namespace stimloop::cuda {

// Per image: where its network reads and writes.
struct ImageSlot {
  const float* gradient;  // d objective / d image (float32, from the backward pass)
  float* input;           // the network's input (float32)
  const float* outputs;   // the network's outputs for this image
  int output;             // objective: sign * outputs[output]
  double sign;
};

// The synthesis state of N images of h x w x 3 values each (all device pointers).
struct ImageState {
  int n = 0, h = 0, w = 0;
  const ImageSlot* slots = nullptr;
  double* x = nullptr;        // n x size: current images
  double* best = nullptr;     // n x size: best images so far
  double* scratch = nullptr;  // n x size: the blur's intermediate
  double* best_value = nullptr;
  double* best_response = nullptr;
  int* improved = nullptr;  // the last evaluation beat the best: copy x into best before x changes
  int* has_best = nullptr;
  double* partials = nullptr;  // n x bands(h): per-band sums of squares of the gradient
};

// Image-wide kernels split each image into bands of rows, one block per (band, image), so one
// image still spreads over many SMs (a rig's single stimulus: 56 blocks) and 219 images fill the
// card.
constexpr int kBandRows = 2;
inline int bands(int h) { return (h + kBandRows - 1) / kBandRows; }

constexpr int kMaxBlurRadius = 16;
// A normalised 1-D Gaussian (synthesis/image_ops.cpp's gaussian_kernel), radius 0 = none.
struct BlurTaps {
  int radius = 0;
  double w[2 * kMaxBlurRadius + 1] = {};
};
StatusOr<BlurTaps> make_blur_taps(double sigma);

struct StepSettings {
  double step_size = 10.0;
  bool grayscale = false;
  float means[3] = {0, 0, 0};
  BlurTaps gradient_blur;
};

// x += step * blur(g / (rms(g) + 1e-5)), clipped to the valid range, optionally grayed; writes
// the network input. Copies x into best first where the last evaluation improved on it.
Status launch_update(const ImageState& s, const StepSettings& settings, cudaStream_t stream);
// Best-so-far: where sign * outputs[output] > best_value, record it and mark the image.
Status launch_record(const ImageState& s, cudaStream_t stream);
// The periodic blur of the image itself (after the evaluation of the step; best copied first).
Status launch_blur_images(const ImageState& s, const BlurTaps& taps, cudaStream_t stream);
// Copies pending improvements into best (before reading best).
Status launch_flush_best(const ImageState& s, cudaStream_t stream);
// Writes the network input from x.
Status launch_write_input(const ImageState& s, cudaStream_t stream);
// 8-bit images: round(best or, where !has_best, x + mean) clamped to 0..255.
Status launch_quantize(const ImageState& s, const float means[3], std::uint8_t* out,
                       cudaStream_t stream);

}  // namespace stimloop::cuda
