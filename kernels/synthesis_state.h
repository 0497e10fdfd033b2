// The device synthesis state of the cowley2026 loop as plain data, shared by the CUDA kernels
// (kernels/cuda/synthesis_kernels.cu, kernels/cuda/persistent_synthesis.cu) and the CPU run of
// the persistent step program (kernels/persistent_step.h) that the unit tests drive. Image state
// is float64, as in the authors' code and the host loop (server/synthesis/); the network sees a
// float32 copy. All pointers are device pointers on the GPU, host pointers on the CPU.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "kernels/layer_params.h"  // STIMLOOP_HOST_DEVICE

namespace stimloop {

// Per image: where its network reads and writes.
struct ImageSlot {
  const float* gradient;  // d objective / d image (float32, from the backward pass)
  float* input;           // the network's input (float32)
  const float* outputs;   // the network's outputs for this image
  int output;             // objective: sign * outputs[output]
  double sign;
};

// The synthesis state of N images of h x w x 3 values each.
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
  double* partials = nullptr;  // per-band (or per-row) sums of squares of the gradient
};

constexpr int kMaxBlurRadius = 16;
// A normalised 1-D Gaussian (synthesis/image_ops.cpp's gaussian_kernel), radius 0 = none.
struct BlurTaps {
  int radius = 0;
  double w[2 * kMaxBlurRadius + 1] = {};
};

// The taps for `sigma` (radius 4 sigma, as scipy); an error when wider than kMaxBlurRadius.
StatusOr<BlurTaps> make_blur_taps(double sigma);

struct StepSettings {
  double step_size = 10.0;
  bool grayscale = false;
  float means[3] = {0, 0, 0};
  BlurTaps gradient_blur;
};

// scipy's 'reflect' index (d c b a | a b c d | d c b a), as image_ops.cpp; the first branch is
// the common case of a tap within one image width of the border.
STIMLOOP_HOST_DEVICE inline int reflect_index(int i, int n) {
  if (i >= 0 && i < n) return i;
  if (i >= -n && i < 2 * n) return i < 0 ? -i - 1 : 2 * n - 1 - i;
  if (n == 1) return 0;
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// Best-so-far tracking of image i after an evaluation gave `response` (the authors' rule: keep
// it when sign * response beats the best value).
STIMLOOP_HOST_DEVICE inline void record_response(const ImageState& s, int i, double response) {
  const double value = s.slots[i].sign * response;
  if (value > s.best_value[i]) {
    s.best_value[i] = value;
    s.best_response[i] = response;
    s.improved[i] = 1;
    s.has_best[i] = 1;
  }
}

}  // namespace stimloop
