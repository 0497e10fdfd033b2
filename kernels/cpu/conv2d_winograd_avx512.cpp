// Layer 0 through Winograd F(4, 5) (winograd_forward.h) on 16 lanes. Compiled with -mavx512f and
// called only after the run-time check (cpu_features.h).
#include <immintrin.h>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/winograd_forward.h"

namespace stimloop::cpu::avx512 {
namespace {

// This file's lane type for winograd_forward.h (its own, so the instantiations are too).
struct Lanes512 {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  // Up to 4 blocks of 16 channels a pass, and P tiles for NB blocks: P * NB = 24 accumulators
  // of the 32 registers, beside NB weight vectors and one broadcast input.
  static constexpr int kMaxPassBlocks = 4;
  static constexpr int group_tiles(int nb) { return nb == 1 ? 14 : nb == 2 ? 12 : nb == 3 ? 8 : 6; }
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
};

}  // namespace

void conv_forward_winograd(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out) {
  winograd::forward<Lanes512>(p, n, in, w, bias, p.relu, out);
}

}  // namespace stimloop::cpu::avx512
