#include "kernels/network.h"

namespace stimloop {

std::int64_t Network::macs() const {
  std::int64_t total = 0;
  for (const auto& layer : layers) total += layer.params.macs();
  return total;
}

}  // namespace stimloop
