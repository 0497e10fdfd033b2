#include "kernels/network.h"

#include <algorithm>

namespace stimloop {

std::int64_t Network::macs() const {
  std::int64_t total = 0;
  for (const auto& layer : layers) total += layer.params.macs();
  return total;
}

std::int64_t Network::workspace_floats_per_image() const {
  std::int64_t per_image = 0, widest = input_size();
  for (const auto& layer : layers) {
    per_image += layer.params.out_size();
    widest = std::max({widest, layer.params.out_size(), layer.params.in_size()});
  }
  return per_image + 2 * widest;
}

int Network::images_per_chunk(std::int64_t budget_bytes, int max_batch) const {
  const std::int64_t bytes = 4 * std::max<std::int64_t>(workspace_floats_per_image(), 1);
  return static_cast<int>(std::clamp<std::int64_t>(budget_bytes / bytes, 1, max_batch));
}

}  // namespace stimloop
