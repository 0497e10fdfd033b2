// Per-thread scratch buffers for the vectorised kernels: grow-only, so a kernel allocates on its
// first call per thread and never again at the same sizes (no allocation inside a synthesis step).
// Compiled without any -m flag on purpose: the std::vector code behind it then exists in one,
// portable copy, rather than as inline template instantiations inside the AVX2/AVX-512 files,
// where the linker could pick an AVX-512 copy for the whole program.
#pragma once

#include <cstddef>

namespace stimloop::cpu {

// Independent buffers, so a kernel can hold several at once (e.g. packed weights and a window).
enum class ScratchSlot : int {
  kWeights = 0,
  kWindow,
  kTransformedWeights,  // Winograd layer 0 (conv2d_winograd_avx512.cpp)
  kTransformedInput,
  kCount
};

// At least `count` floats owned by the calling thread, valid until its next call with this slot.
float* scratch_floats(ScratchSlot slot, std::size_t count);

}  // namespace stimloop::cpu
