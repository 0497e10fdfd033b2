#include <cstdint>

#include "kernels/cpu/ops.h"

namespace stimloop::cpu {

void pointwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                       const float* bias, float* out) {
  const std::int64_t pixels = std::int64_t{n} * p.out_h * p.out_w;
  const int cin = p.in_c, cout = p.out_c;
  for_each_row(pixels, worth_threads(p, n), [&](std::int64_t px) {
    const float* a = in + px * cin;
    float* __restrict acc = out + px * cout;
    for (int co = 0; co < cout; ++co) acc[co] = bias ? bias[co] : 0.0f;
    if (cout == 1) {  // a Dense(1) readout: one long dot product
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int ci = 0; ci < cin; ++ci) s += a[ci] * w[ci];
      acc[0] += s;
      return;
    }
    for (int ci = 0; ci < cin; ++ci) {
      const float v = a[ci];
      const float* __restrict w_row = w + std::int64_t{ci} * cout;
      for (int co = 0; co < cout; ++co) acc[co] += v * w_row[co];
    }
  });
}

void pointwise_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                              float* d_in) {
  const std::int64_t pixels = std::int64_t{n} * p.out_h * p.out_w;
  const int cin = p.in_c, cout = p.out_c;
  for_each_row(pixels, worth_threads(p, n), [&](std::int64_t px) {
    const float* g = d_out + px * cout;
    float* d = d_in + px * cin;
    for (int ci = 0; ci < cin; ++ci) {
      const float* w_row = w + std::int64_t{ci} * cout;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int co = 0; co < cout; ++co) s += g[co] * w_row[co];
      d[ci] = s;
    }
  });
}

}  // namespace stimloop::cpu
