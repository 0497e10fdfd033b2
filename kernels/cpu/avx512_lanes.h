// Small AVX-512 helpers shared by the AVX-512 kernels. Include only from files compiled with
// -mavx512f.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstring>

namespace stimloop::cpu::avx512 {

inline constexpr int kLanes = 16;

// The first `count` (0..16) lanes: the partial last block of a channel row.
inline __mmask16 lane_mask(int count) {
  return count >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
}

// The sum of the 16 lanes. The masked forms (all lanes selected) compile to the same
// instructions; the plain ones, and _mm512_reduce_add_ps, start from an undefined vector that
// GCC 12 warns about.
inline float sum_lanes(__m512 v) {
  constexpr __mmask16 kAll = 0xFFFF;
  __m512 s = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm512_add_ps(s, _mm512_mask_shuffle_f32x4(s, kAll, s, s, _MM_SHUFFLE(2, 3, 0, 1)));
  __m128 q = _mm512_mask_extractf32x4_ps(_mm_setzero_ps(), 0xF, s, 0);
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 0x55));
  return _mm_cvtss_f32(q);
}

// Pixels first .. first + cols - 1 of a row of `width` pixels of `c` floats, zeros where they fall
// outside it: the window a tile at a border reads. One copy and at most two fills (per-pixel
// calls cost as much as a tile's arithmetic).
inline void copy_padded(const float* row, int width, int first, int cols, int c, float* dst) {
  const int lo = first < 0 ? 0 : first;
  const int hi = first + cols > width ? width : first + cols;
  const std::size_t px = sizeof(float) * std::size_t(c);
  if (hi <= lo) {
    std::memset(dst, 0, px * cols);
    return;
  }
  std::memset(dst, 0, px * (lo - first));
  std::memcpy(dst + std::size_t(lo - first) * c, row + std::size_t(lo) * c, px * (hi - lo));
  std::memset(dst + std::size_t(hi - first) * c, 0, px * (first + cols - hi));
}

inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

}  // namespace stimloop::cpu::avx512
