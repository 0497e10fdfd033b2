// Small AVX2 helpers shared by the AVX2 kernels. Include only from files compiled with -mavx2.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace stimloop::cpu::avx2 {

inline constexpr int kLanes = 8;

// Mask selecting the first `count` (1..8) lanes, for the partial last block of a channel row.
inline __m256i lane_mask(int count) {
  alignas(32) static const std::int32_t kMasks[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                      0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMasks + 8 - count));
}

// The sum of the 8 lanes.
inline float sum_lanes(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

// The lane type of the kernels written once for any vector width (see avx512_lanes.h for why it
// lives in an anonymous namespace).
namespace {  // NOLINT(cert-dcl59-cpp,google-build-namespaces)

struct Lanes256 {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int kLanes = 8;
  // Winograd layer 0: up to 3 blocks of 8 channels a pass, and P tiles for NB blocks: at most
  // 12 accumulators of the 16 registers, beside NB weight vectors and one broadcast input.
  static constexpr int kMaxPassBlocks = 3;
  static constexpr int group_tiles(int nb) { return nb == 1 ? 12 : nb == 2 ? 5 : 4; }
  // Depthwise row tiles: 8 pixels, as on AVX-512. Their window (up to 19 vectors) no longer fits
  // the 16 registers, and GCC reads part of it from L1 as FMA operands; still the fastest of
  // 3, 4, 6 and 8 (46 channels, layer 1, one thread, interleaved: forward 0.20-0.23 ms against
  // 0.23-0.24 at 4 and 6, backward 0.23 against 0.31 and 0.26; the per-pixel kernel 0.27/0.50).
  static constexpr int kDepthwiseTile = 8;
  // Layer-0 backward (conv_gather_backward.h): X pixels x NC channels = at most 12 partial sums,
  // beside NC weight vectors and one gradient.
  static constexpr int gather_pixels(int nc) { return nc == 1 ? 8 : nc == 2 ? 6 : nc == 3 ? 4 : 3; }
  static void pin(V& v) { asm("" : "+x"(v)); }
  static float sum_lanes(V v) { return avx2::sum_lanes(v); }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* at) { return _mm256_loadu_ps(at); }
  static void store(float* at, V v) { _mm256_storeu_ps(at, v); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  // max(0, v) in this operand order passes a NaN on.
  static V relu(V v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  static Mask mask(int count) { return lane_mask(std::min(count, kLanes)); }
  static V load_masked(Mask m, const float* at) { return _mm256_maskload_ps(at, m); }
  static void store_masked(float* at, Mask m, V v) { _mm256_maskstore_ps(at, m, v); }
  // v where keep > 0 or is NaN, else 0 (the scalar `keep <= 0 ? 0 : v`).
  static V keep_positive(V v, Mask m, const float* keep) {
    return _mm256_and_ps(
        v, _mm256_cmp_ps(_mm256_maskload_ps(keep, m), _mm256_setzero_ps(), _CMP_NLE_UQ));
  }
};

}  // namespace

}  // namespace stimloop::cpu::avx2
