#include "server/sessions/spatial_prior.h"

#include <algorithm>
#include <cmath>

#include "server/synthesis/image_ops.h"

namespace stimloop::sessions {

SpatialPrior::SpatialPrior(FeatureShape shape, double sigma) : shape_(shape) {
  // The synthesis step's kernel (truncated at 4 sigma, normalised), used with zero borders here.
  if (sigma > 0.0) taps_ = synthesis::gaussian_kernel(sigma);
}

void SpatialPrior::blur_once(std::span<double> x) const {
  const int h = shape_.h, w = shape_.w, c = shape_.c;
  const int radius = static_cast<int>(taps_.size() / 2);
  // Along x: for each row and feature, a line of w values with stride c.
  std::vector<double> line(std::max(h, w));
  for (int y = 0; y < h; ++y) {
    for (int k = 0; k < c; ++k) {
      double* base = x.data() + (std::int64_t{y} * w) * c + k;
      for (int i = 0; i < w; ++i) line[i] = base[std::int64_t{i} * c];
      for (int i = 0; i < w; ++i) {
        double sum = 0.0;
        const int lo = std::max(0, i - radius), hi = std::min(w - 1, i + radius);
        for (int j = lo; j <= hi; ++j) sum += taps_[j - i + radius] * line[j];
        base[std::int64_t{i} * c] = sum;
      }
    }
  }
  // Along y: stride w * c.
  for (int xx = 0; xx < w; ++xx) {
    for (int k = 0; k < c; ++k) {
      double* base = x.data() + std::int64_t{xx} * c + k;
      const std::int64_t stride = std::int64_t{w} * c;
      for (int i = 0; i < h; ++i) line[i] = base[i * stride];
      for (int i = 0; i < h; ++i) {
        double sum = 0.0;
        const int lo = std::max(0, i - radius), hi = std::min(h - 1, i + radius);
        for (int j = lo; j <= hi; ++j) sum += taps_[j - i + radius] * line[j];
        base[i * stride] = sum;
      }
    }
  }
}

void SpatialPrior::apply(std::span<double> x) const {
  if (identity()) return;
  blur_once(x);
  blur_once(x);
}

}  // namespace stimloop::sessions
