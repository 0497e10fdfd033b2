// Projected gradient ascent for the adversarial objective: every image stays within `epsilon`
// (pixel units) of its initial image x0, in the L-inf or L2 norm.
//   L-inf  x += step * sign(g), then each value clamped to [x0 - eps, x0 + eps]
//   L2     x += step * g / ||g||_2 (no step when g is 0), then x - x0 scaled down to norm eps
//          when it is longer
// then grayscale (if asked) and clipping to the valid range. Neither leaves the ball: the driver
// grays x0 itself when grayscale is asked, and channel-averaging (L-inf: a mean of values inside
// [o - eps, o + eps]; L2: an orthogonal projection onto a subspace holding x0) and clipping (each
// value moves toward the valid box, which holds x0's value) only bring x closer to x0.
//
// to_rgb8 keeps the 8-bit image inside the ball around the 8-bit original o = quantize(x0):
//   L-inf  nearest rounding, then each value clamped to [ceil(o - eps), floor(o + eps)] and
//          [0, 255]
//   L2     nearest rounding; when that lands farther than eps from o, each component is rounded
//          toward o instead (o + trunc(raw - o)), which is never farther than the float image.
//          A float image outside the ball (which update() never leaves) is first scaled into it.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "server/synthesis/method.h"

namespace stimloop::synthesis {
namespace {

class Pgd final : public Method {
 public:
  explicit Pgd(const SynthesisRequest& r)
      : step_(r.step_size), eps_(r.epsilon), norm_(r.norm), grayscale_(r.grayscale) {}

  void update(int, BatchState& s, std::span<const double> gradient) override {
    const std::int64_t size = s.shape.size();
    for (int i = 0; i < s.n; ++i) {
      const double* g = gradient.data() + i * size;
      auto img = s.image(i);
      auto x0 = s.image0(i);
      if (norm_ == Norm::kLinf) {
        for (std::int64_t j = 0; j < size; ++j) {
          const double sign = g[j] > 0 ? 1.0 : g[j] < 0 ? -1.0 : 0.0;
          img[j] = std::clamp(img[j] + step_ * sign, x0[j] - eps_, x0[j] + eps_);
        }
      } else {
        double sum_sq = 0.0;
        for (std::int64_t j = 0; j < size; ++j) sum_sq += g[j] * g[j];
        const double g_norm = std::sqrt(sum_sq);
        if (g_norm > 0 && std::isfinite(g_norm)) {
          const double scale = step_ / g_norm;
          for (std::int64_t j = 0; j < size; ++j) img[j] += scale * g[j];
        }
        double d_sq = 0.0;
        for (std::int64_t j = 0; j < size; ++j) d_sq += (img[j] - x0[j]) * (img[j] - x0[j]);
        const double d = std::sqrt(d_sq);
        if (d > eps_) {
          const double shrink = eps_ / d;
          for (std::int64_t j = 0; j < size; ++j) img[j] = x0[j] + (img[j] - x0[j]) * shrink;
        }
      }
      if (grayscale_) to_grayscale(img, s.means);
      clip_to_valid(img, s.means);
    }
  }

  std::vector<std::uint8_t> to_rgb8(const BatchState& s, int i,
                                    std::span<const double> image) const override {
    const std::vector<std::uint8_t> original = quantize(s.image0(i), s.means);
    const std::size_t size = image.size();
    std::vector<double> raw(size);
    for (std::size_t j = 0; j < size; ++j)
      raw[j] = std::clamp(image[j] + s.means[j % 3], 0.0, 255.0);
    std::vector<std::uint8_t> out(size);

    if (norm_ == Norm::kLinf) {
      const double radius = std::floor(eps_);  // o integer: ceil(o - eps) = o - floor(eps)
      for (std::size_t j = 0; j < size; ++j) {
        const double o = original[j];
        const double lo = std::max(0.0, o - radius), hi = std::min(255.0, o + radius);
        out[j] = static_cast<std::uint8_t>(std::clamp(std::nearbyint(raw[j]), lo, hi));
      }
      return out;
    }

    // L2. A float image outside the ball is first brought onto its surface.
    double d_sq = 0.0;
    for (std::size_t j = 0; j < size; ++j) d_sq += (raw[j] - original[j]) * (raw[j] - original[j]);
    if (std::sqrt(d_sq) > eps_) {
      const double shrink = eps_ / std::sqrt(d_sq);
      for (std::size_t j = 0; j < size; ++j) raw[j] = original[j] + (raw[j] - original[j]) * shrink;
    }
    const double eps_sq = eps_ * eps_;
    std::vector<int> delta(size);  // q - o
    std::int64_t q_sq = 0;
    for (std::size_t j = 0; j < size; ++j) {
      delta[j] = static_cast<int>(std::nearbyint(raw[j])) - original[j];
      q_sq += std::int64_t{delta[j]} * delta[j];
    }
    if (double(q_sq) > eps_sq) {
      q_sq = 0;
      for (std::size_t j = 0; j < size; ++j) {
        delta[j] = static_cast<int>(std::trunc(raw[j] - original[j]));
        q_sq += std::int64_t{delta[j]} * delta[j];
      }
      // Truncation is never farther than the float image, which is within eps up to rounding in
      // the scaling above; should that rounding ever tip an integer over, pull the largest
      // component in by one level until the image is inside.
      while (double(q_sq) > eps_sq) {
        std::size_t k = 0;
        for (std::size_t j = 1; j < size; ++j) {
          if (std::abs(delta[j]) > std::abs(delta[k])) k = j;
        }
        q_sq -= std::int64_t{delta[k]} * delta[k];
        delta[k] += delta[k] > 0 ? -1 : 1;
        q_sq += std::int64_t{delta[k]} * delta[k];
      }
    }
    for (std::size_t j = 0; j < size; ++j) {
      out[j] = static_cast<std::uint8_t>(std::clamp(original[j] + delta[j], 0, 255));
    }
    return out;
  }

 private:
  double step_, eps_;
  Norm norm_;
  bool grayscale_;
};

}  // namespace

std::unique_ptr<Method> make_pgd(const SynthesisRequest& request) {
  return std::make_unique<Pgd>(request);
}

}  // namespace stimloop::synthesis
