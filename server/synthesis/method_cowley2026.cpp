// The authors' preferred-stimulus algorithm (Cowley et al. 2026, classes/class_synth.py), step
// by step as docs/domain.md gives it: normalise the gradient by its RMS (+1e-5), blur it with
// sigma 1 over the spatial axes, step 10 pixel levels along it, clip each channel to the valid
// range, optionally gray; after the step's evaluation, blur the image itself every 50 steps
// (t > 0, t % 50 == 0). Minimisation arrives here as maximisation of the negated output, so
// "image + step * g" is the authors' "image -/+ 10 g".
#include <cmath>

#include "server/synthesis/method.h"

namespace stimloop::synthesis {
namespace {

class Cowley2026 final : public Method {
 public:
  explicit Cowley2026(const SynthesisRequest& r)
      : step_(r.step_size),
        gradient_sigma_(r.gradient_blur_sigma),
        blur_every_(r.image_blur_every),
        image_sigma_(r.image_blur_sigma),
        grayscale_(r.grayscale) {}

  // Images are independent: a batch is spread over the cores, each image computed by one thread
  // in a fixed order, so the result does not depend on the thread count. A single image (a rig's
  // stimulus) runs outside any parallel construct, so the blur's own row loops use the cores: a
  // region nested in even an inactive one made libgomp start a fresh team every call (a
  // 1000-step synthesis on 2 threads went from 2.4 s to 6.5 s).
  void update(int, BatchState& s, std::span<const double> gradient) override {
    buffers_.resize(s.n);
    if (s.n == 1) {
      update_image(0, s, gradient);
      return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < s.n; ++i) update_image(i, s, gradient);
  }

  bool after_evaluation(int t, BatchState& s) override {
    if (blur_every_ <= 0 || t == 0 || t % blur_every_ != 0 || image_sigma_ <= 0) return false;
    buffers_.resize(s.n);
    if (s.n == 1) {
      gaussian_blur(s.image(0), s.shape, image_sigma_, buffers_[0].second);
      return true;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < s.n; ++i) {
      gaussian_blur(s.image(i), s.shape, image_sigma_, buffers_[i].second);
    }
    return true;
  }

  bool initial_image_is_candidate() const override { return false; }

 private:
  void update_image(int i, BatchState& s, std::span<const double> gradient) {
    const std::int64_t size = s.shape.size();
    auto& [g, scratch] = buffers_[i];
    g.resize(size);
    const double* gi = gradient.data() + i * size;
    double sum_sq = 0.0;
    for (std::int64_t j = 0; j < size; ++j) sum_sq += gi[j] * gi[j];
    const double scale = 1.0 / (std::sqrt(sum_sq / double(size)) + 1e-5);
    for (std::int64_t j = 0; j < size; ++j) g[j] = gi[j] * scale;
    gaussian_blur(g, s.shape, gradient_sigma_, scratch);
    auto img = s.image(i);
    for (std::int64_t j = 0; j < size; ++j) img[j] += step_ * g[j];
    clip_to_valid(img, s.means);
    if (grayscale_) to_grayscale(img, s.means);
  }

  double step_, gradient_sigma_;
  int blur_every_;
  double image_sigma_;
  bool grayscale_;
  // Per image: the normalised gradient and the blur's scratch, reused every step.
  std::vector<std::pair<std::vector<double>, std::vector<double>>> buffers_;
};

}  // namespace

std::unique_ptr<Method> make_cowley2026(const SynthesisRequest& request) {
  return std::make_unique<Cowley2026>(request);
}

}  // namespace stimloop::synthesis
