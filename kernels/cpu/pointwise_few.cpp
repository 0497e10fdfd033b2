#include "kernels/cpu/pointwise_few.h"

#include <cstdint>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"

namespace stimloop::cpu {
namespace {

constexpr int kFewOutputs = 8;

// w[ci][co] -> [co][ci], in the calling thread's grow-only scratch (no allocation per step, and
// no std::vector code in this -mavx2 file: scratch.h says why).
const float* transposed(const float* w, int cin, int cout) {
  float* wt = scratch_floats(ScratchSlot::kWeights, std::size_t(cin) * cout);
  for (int ci = 0; ci < cin; ++ci) {
    for (int co = 0; co < cout; ++co)
      wt[std::size_t(co) * cin + ci] = w[std::size_t(ci) * cout + co];
  }
  return wt;
}

}  // namespace

bool pointwise_few_outputs(const LayerParams& p) {
  return p.kind == LayerKind::kPointwise && p.out_c >= 2 && p.out_c < kFewOutputs;
}

void pointwise_forward_few(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out) {
  const std::int64_t pixels = std::int64_t{n} * p.out_h * p.out_w;
  const int cin = p.in_c, cout = p.out_c;
  const float* wt = transposed(w, cin, cout);
  for_each_row(pixels, worth_threads(p, n), [&](std::int64_t px) {
    const float* __restrict a = in + px * cin;
    for (int co = 0; co < cout; ++co) {
      const float* __restrict w_co = wt + std::int64_t{co} * cin;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int ci = 0; ci < cin; ++ci) s += a[ci] * w_co[ci];
      out[px * cout + co] = (bias != nullptr ? bias[co] : 0.0f) + s;
    }
  });
}

void pointwise_backward_input_few(const LayerParams& p, int n, const float* d_out, const float* w,
                                  float* d_in) {
  const std::int64_t pixels = std::int64_t{n} * p.out_h * p.out_w;
  const int cin = p.in_c, cout = p.out_c;
  const float* wt = transposed(w, cin, cout);
  for_each_row(pixels, worth_threads(p, n), [&](std::int64_t px) {
    const float* g = d_out + px * cout;
    float* __restrict d = d_in + px * cin;
    // d[ci] = sum over co of g[co] * w[ci][co], in co order: row co of the transposed weights,
    // scaled by g[co], added along ci (vectorised).
    for (int ci = 0; ci < cin; ++ci) d[ci] = 0.0f;
    for (int co = 0; co < cout; ++co) {
      const float gc = g[co];
      const float* __restrict w_co = wt + std::int64_t{co} * cin;
#pragma omp simd
      for (int ci = 0; ci < cin; ++ci) d[ci] += gc * w_co[ci];
    }
  });
}

}  // namespace stimloop::cpu
