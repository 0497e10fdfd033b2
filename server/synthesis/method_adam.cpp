// Adam ascent on the (penalised) objective, in pixel units: lr = step_size, betas beta1/beta2,
// eps 1e-8, bias-corrected moments kept per image. Optional extras, each off by default:
//   jitter            a random circular shift (dy, dx), each in [-jitter, jitter], per image and
//                     step; drawn from the image's own stream, dy first, then dx (nothing is drawn
//                     when jitter is 0). The driver rolls the image and rolls the gradient back.
//   gradient blur     Gaussian blur (image_ops' gaussian_blur) of the gradient before the moments
//   rms_contrast      after the step: raw = x + mean_c; subtract the image's overall raw mean,
//                     rescale so the RMS of (raw - mean) is rms_contrast, add the mean back
// then grayscale (if asked) and clipping to the valid range, in that order.
#include <algorithm>
#include <cmath>

#include "server/synthesis/method.h"

namespace stimloop::synthesis {
namespace {

constexpr double kAdamEps = 1e-8;

class Adam final : public Method {
 public:
  Adam(const SynthesisRequest& r, const ImageShape& shape, int n)
      : lr_(r.step_size),
        beta1_(r.beta1),
        beta2_(r.beta2),
        jitter_(r.jitter),
        gradient_sigma_(r.gradient_blur_sigma),
        rms_contrast_(r.rms_contrast),
        grayscale_(r.grayscale),
        m_(std::size_t(n) * std::size_t(shape.size()), 0.0),
        v_(m_.size(), 0.0) {}

  std::pair<int, int> jitter(int, int i, BatchState& s) override {
    if (jitter_ <= 0) return {0, 0};
    const int dy = s.rngs[i].uniform_int(-jitter_, jitter_);
    const int dx = s.rngs[i].uniform_int(-jitter_, jitter_);
    return {dy, dx};
  }

  void update(int, BatchState& s, std::span<const double> gradient) override {
    const std::int64_t size = s.shape.size();
    const std::size_t total = std::size_t(s.n) * std::size_t(size);
    if (m_.size() != total) {  // a batch of another shape than announced: start afresh
      m_.assign(total, 0.0);
      v_.assign(total, 0.0);
      updates_ = 0;
    }
    ++updates_;
    const double correction1 = 1.0 - std::pow(beta1_, updates_);
    const double correction2 = 1.0 - std::pow(beta2_, updates_);
    g_.resize(size);
    for (int i = 0; i < s.n; ++i) {
      const double* gi = gradient.data() + i * size;
      std::copy(gi, gi + size, g_.begin());
      if (gradient_sigma_ > 0) gaussian_blur(g_, s.shape, gradient_sigma_, scratch_);
      double* m = m_.data() + i * size;
      double* v = v_.data() + i * size;
      auto img = s.image(i);
      for (std::int64_t j = 0; j < size; ++j) {
        m[j] = beta1_ * m[j] + (1.0 - beta1_) * g_[j];
        v[j] = beta2_ * v[j] + (1.0 - beta2_) * g_[j] * g_[j];
        const double m_hat = m[j] / correction1;
        const double v_hat = v[j] / correction2;
        img[j] += lr_ * m_hat / (std::sqrt(v_hat) + kAdamEps);
      }
      if (rms_contrast_ > 0) set_rms_contrast(img, s.means);
      if (grayscale_) to_grayscale(img, s.means);
      clip_to_valid(img, s.means);
    }
  }

 private:
  void set_rms_contrast(std::span<double> img, const std::array<float, 3>& means) const {
    if (img.empty()) return;
    double sum = 0.0;
    for (std::size_t j = 0; j < img.size(); ++j) sum += img[j] + means[j % 3];
    const double mean = sum / double(img.size());
    double sum_sq = 0.0;
    for (std::size_t j = 0; j < img.size(); ++j) {
      const double d = img[j] + means[j % 3] - mean;
      sum_sq += d * d;
    }
    const double rms = std::sqrt(sum_sq / double(img.size()));
    if (!(rms > 0)) return;  // a flat image has no contrast to rescale
    const double scale = rms_contrast_ / rms;
    for (std::size_t j = 0; j < img.size(); ++j) {
      const double raw = mean + (img[j] + means[j % 3] - mean) * scale;
      img[j] = raw - means[j % 3];
    }
  }

  double lr_, beta1_, beta2_;
  int jitter_;
  double gradient_sigma_, rms_contrast_;
  bool grayscale_;
  std::vector<double> m_, v_;  // n x size: first and second moments
  int updates_ = 0;            // updates done (the bias corrections' exponent)
  std::vector<double> g_, scratch_;
};

}  // namespace

std::unique_ptr<Method> make_adam(const SynthesisRequest& request, const ImageShape& shape, int n) {
  return std::make_unique<Adam>(request, shape, n);
}

}  // namespace stimloop::synthesis
