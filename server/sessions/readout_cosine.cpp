#include <cmath>

#include "server/sessions/calibration.h"

namespace stimloop::sessions {
namespace {

// The readout as one weight per feature (h x w x c, channels-last); empty if malformed.
std::vector<double> full_weights(const ChannelFit& fit, const FeatureShape& shape) {
  const std::int64_t p = shape.size(), positions = std::int64_t{shape.h} * shape.w;
  std::vector<double> w;
  if (fit.form == ReadoutForm::kRidge) {
    if (static_cast<std::int64_t>(fit.weights.size()) == p)
      w.assign(fit.weights.begin(), fit.weights.end());
    return w;
  }
  if (static_cast<std::int64_t>(fit.spatial_mask.size()) != positions ||
      static_cast<int>(fit.feature_weights.size()) != shape.c) {
    return w;
  }
  w.resize(p);
  for (std::int64_t s = 0; s < positions; ++s) {
    for (int k = 0; k < shape.c; ++k) {
      w[s * shape.c + k] = double{fit.spatial_mask[s]} * fit.feature_weights[k];
    }
  }
  return w;
}

}  // namespace

double readout_cosine(const ChannelFit& a, const ChannelFit& b, const FeatureShape& shape) {
  const auto wa = full_weights(a, shape), wb = full_weights(b, shape);
  if (wa.empty() || wb.empty()) return 0.0;
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (std::size_t j = 0; j < wa.size(); ++j) {
    ab += wa[j] * wb[j];
    aa += wa[j] * wa[j];
    bb += wb[j] * wb[j];
  }
  if (aa <= 0.0 || bb <= 0.0) return 0.0;
  return ab / std::sqrt(aa * bb);
}

}  // namespace stimloop::sessions
