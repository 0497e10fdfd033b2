// The zero-padded input window a tile at an image border reads, for the kernels written once for
// any vector width (conv_gather_backward.h) and the AVX-512 convolution. A template on the lane
// type, as everything those kernels share, so that each instruction set's file keeps its own copy.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace stimloop::cpu {

// Pixels first .. first + cols - 1 of a row of `width` pixels of `c` floats, zeros where they fall
// outside it. One copy and at most two fills (per-pixel calls cost as much as a tile's
// arithmetic).
template <typename L>
void copy_padded(const float* row, int width, int first, int cols, int c, float* dst) {
  const int lo = std::max(first, 0), hi = std::min(first + cols, width);
  const std::size_t px = sizeof(float) * std::size_t(c);
  if (hi <= lo) {
    std::memset(dst, 0, px * cols);
    return;
  }
  std::memset(dst, 0, px * (lo - first));
  std::memcpy(dst + std::size_t(lo - first) * c, row + std::size_t(lo) * c, px * (hi - lo));
  std::memset(dst + std::size_t(hi - first) * c, 0, px * (first + cols - hi));
}

}  // namespace stimloop::cpu
