#include "models/preprocess.h"

namespace stimloop {

std::vector<float> recenter_rgb8(std::span<const std::uint8_t> raw,
                                 const std::array<float, 3>& channel_means) {
  std::vector<float> out(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    out[i] = static_cast<float>(raw[i]) - channel_means[i % 3];
  }
  return out;
}

}  // namespace stimloop
