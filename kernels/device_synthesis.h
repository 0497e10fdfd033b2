// Whole synthesis runs on a backend's device: the authors' cowley2026 loop (docs/domain.md) for
// many (model, seed) images at once, with every step -- forward, backward to the image, gradient
// RMS normalisation, Gaussian blur, update, clipping, best-so-far tracking, the periodic image
// blur -- on the device, and no host round trip until results are read. The CUDA backend
// implements it (kernels/cuda/device_synthesis.cu); other backends return UNIMPLEMENTED and the
// host loop (server/synthesis/) runs instead.
//
// The objective of target t is sign_t * outputs[output_t] (preferred: +1, suppressive: -1).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace stimloop {

class ResidentNetwork;

struct Cowley2026Settings {
  double step_size = 10.0;
  double gradient_sigma = 1.0;
  int image_blur_every = 50;  // 0: never
  double image_sigma = 1.0;
  bool grayscale = false;
  std::array<float, 3> means{};  // re-centering, for clipping, gray and 8-bit quantisation
};

struct SynthesisTarget {
  ResidentNetwork* network = nullptr;  // resident on the backend that runs the synthesis
  int output = 0;
  double sign = 1.0;
  double initial_best = 0.0;  // the authors' best-so-far start: 0 maximising, -1e5 minimising
  int count = 0;              // images (seeds)
  std::span<const double> initial_images;  // count x (h x w x 3), re-centered
};

class DeviceSynthesis {
 public:
  virtual ~DeviceSynthesis() = default;
  // Runs `steps` more steps and waits for them.
  virtual Status run(int steps) = 0;
  virtual int steps_done() const = 0;
  // Images over all targets, in target order.
  virtual int images() const = 0;
  // Per image: the best objective value so far (initial_best until one improved on it), the
  // response (output value) it came with, and whether any step improved on the start.
  virtual Status best(std::vector<double>& values, std::vector<double>& responses,
                      std::vector<std::uint8_t>& has_best) = 0;
  // Per image, h x w x 3 values: the best image (or the current one when none improved on the
  // start) rounded to 8 bits on the device.
  virtual Status best_rgb8(std::vector<std::uint8_t>& pixels) = 0;
  // The current (best == false) or best images in double, for tests.
  virtual Status images_f64(bool best, std::vector<double>& out) = 0;
  // How it runs, e.g. "custom kernels, 1 grouped launch per layer, CUDA graph".
  virtual std::string description() const = 0;
  // Runs `steps` more steps launch by launch with a timer between launches and returns, in
  // launch order, (what ran, milliseconds summed over the steps): where a step's time goes.
  virtual StatusOr<std::vector<std::pair<std::string, double>>> profile(int steps) = 0;
};

}  // namespace stimloop
