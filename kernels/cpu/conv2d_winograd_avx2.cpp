// Layer 0 through Winograd F(4, 5) (winograd_forward.h) on 8 lanes, for processors with AVX2 and
// FMA but no AVX-512 (most laptops). Compiled with -mavx2 -mfma and called only after the
// run-time check (cpu_features.h).
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/avx2_lanes.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/winograd_forward.h"

namespace stimloop::cpu::avx2 {
namespace {

// This file's lane type for winograd_forward.h (its own, so the instantiations are too).
struct Lanes256 {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int kLanes = 8;
  // Up to 3 blocks of 8 channels a pass, and P tiles for NB blocks: at most 12 accumulators of
  // the 16 registers, beside NB weight vectors and one broadcast input.
  static constexpr int kMaxPassBlocks = 3;
  static constexpr int group_tiles(int nb) { return nb == 1 ? 12 : nb == 2 ? 5 : 4; }
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
};

}  // namespace

void conv_forward_winograd(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out) {
  // No ReLU here: the AVX2 convolution leaves it to the dispatcher (dispatch.cpp).
  winograd::forward<Lanes256>(p, n, in, w, bias, /*relu=*/false, out);
}

}  // namespace stimloop::cpu::avx2
