#include "kernels/cpu/scratch.h"

#include <array>
#include <vector>

namespace stimloop::cpu {

float* scratch_floats(ScratchSlot slot, std::size_t count) {
  thread_local std::array<std::vector<float>, static_cast<int>(ScratchSlot::kCount)> buffers;
  std::vector<float>& b = buffers[static_cast<int>(slot)];
  if (b.size() < count) b.resize(count);
  return b.data();
}

}  // namespace stimloop::cpu
