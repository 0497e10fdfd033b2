#include "kernels/synthesis_state.h"

#include <cmath>
#include <string>

namespace stimloop {

StatusOr<BlurTaps> make_blur_taps(double sigma) {
  BlurTaps taps;
  if (sigma <= 0.0) {
    taps.w[0] = 1.0;
    return taps;
  }
  const int radius = static_cast<int>(4.0 * sigma + 0.5);
  if (radius > kMaxBlurRadius) {
    return invalid_argument("blur sigma " + std::to_string(sigma) +
                            " is too wide for the device step (at most " +
                            std::to_string(kMaxBlurRadius) + " pixels of radius)");
  }
  taps.radius = radius;
  double total = 0.0;
  for (int i = -radius; i <= radius; ++i) {
    taps.w[i + radius] = std::exp(-0.5 * i * i / (sigma * sigma));
    total += taps.w[i + radius];
  }
  for (int i = 0; i <= 2 * radius; ++i) taps.w[i] /= total;
  return taps;
}

}  // namespace stimloop
