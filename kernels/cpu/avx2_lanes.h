// Small AVX2 helpers shared by the AVX2 kernels. Include only from files compiled with -mavx2.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace stimloop::cpu::avx2 {

inline constexpr int kLanes = 8;

// Mask selecting the first `count` (1..8) lanes, for the partial last block of a channel row.
inline __m256i lane_mask(int count) {
  alignas(32) static const std::int32_t kMasks[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                      0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMasks + 8 - count));
}

}  // namespace stimloop::cpu::avx2
