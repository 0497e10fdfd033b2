#include <algorithm>

#include "server/sessions/calibration.h"

namespace stimloop::sessions {

double fit_agreement(const ChannelFit& a, const ChannelFit& b, const FeatureBank& bank,
                     int recent) {
  const int n = bank.images(), first = std::max(0, n - recent);
  if (n - first < 3) return 1.0;
  std::vector<double> pa, pb;
  for (int i = first; i < n; ++i) {
    pa.push_back(predict(a, bank.shape(), bank.row(i)));
    pb.push_back(predict(b, bank.shape(), bank.row(i)));
  }
  return pearson_r(pa, pb);
}

}  // namespace stimloop::sessions
