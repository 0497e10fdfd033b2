// Small AVX-512 helpers shared by the AVX-512 kernels. Include only from files compiled with
// -mavx512f.
#pragma once

#include <immintrin.h>

#include <cstddef>

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

inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

// The lane type of the kernels written once for any vector width (winograd_forward.h,
// depthwise_row_tiles.h). In an anonymous namespace on purpose: each file that includes this
// gets a type of its own, so its instantiations of those templates are its own too, compiled
// with its flags, never merged by the linker with another file's (NOLINT for the rule against
// anonymous namespaces in headers, which exists to prevent exactly that duplication).
namespace {  // NOLINT(cert-dcl59-cpp,google-build-namespaces)

struct Lanes512 {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  // Winograd layer 0: up to 4 blocks of 16 channels a pass, and P tiles for NB blocks: P * NB =
  // 24 accumulators of the 32 registers, beside NB weight vectors and one broadcast input.
  static constexpr int kMaxPassBlocks = 4;
  static constexpr int group_tiles(int nb) { return nb == 1 ? 14 : nb == 2 ? 12 : nb == 3 ? 8 : 6; }
  // Depthwise row tiles: 8 pixels, 8 sums and a window of up to 19 vectors (stride 2, 5 wide).
  static constexpr int kDepthwiseTile = 8;
  // Layer-0 backward (conv_gather_backward.h): X pixels x NC channels = 24 partial sums (16 for
  // one channel, where more pixels would only add loads).
  static constexpr int gather_pixels(int nc) {
    return nc == 1 ? 16 : nc == 2 ? 12 : nc == 3 ? 8 : 6;
  }
  static float sum_lanes(V v) { return avx512::sum_lanes(v); }
  static void pin(V& v) { asm("" : "+v"(v)); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* at) { return _mm512_loadu_ps(at); }
  static void store(float* at, V v) { _mm512_storeu_ps(at, v); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // max(0, v) in this operand order passes a NaN on, as the direct kernel does; the masked form
  // only avoids GCC 12's warning about the plain one's undefined vector.
  static V relu(V v) { return _mm512_mask_max_ps(v, 0xFFFF, _mm512_setzero_ps(), v); }
  static Mask mask(int count) { return lane_mask(count); }
  static V load_masked(Mask m, const float* at) { return _mm512_maskz_loadu_ps(m, at); }
  static void store_masked(float* at, Mask m, V v) { _mm512_mask_storeu_ps(at, m, v); }
  // v where keep > 0 or is NaN, else 0 (the scalar `keep <= 0 ? 0 : v`).
  static V keep_positive(V v, Mask m, const float* keep) {
    const __mmask16 on =
        _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, keep), _mm512_setzero_ps(), _CMP_NLE_UQ);
    return _mm512_maskz_mov_ps(on, v);
  }
};

}  // namespace

}  // namespace stimloop::cpu::avx512
