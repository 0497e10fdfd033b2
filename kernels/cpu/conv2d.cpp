#include <algorithm>
#include <cstdint>

#include "kernels/cpu/conv_gather_backward.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/winograd_f4x5.h"

namespace stimloop::cpu {

void conv2d_forward(const LayerParams& p, int n, const float* in, const float* w, const float* bias,
                    float* out) {
  const int rows = n * p.out_h;
  const int cin = p.in_c, cout = p.out_c;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.out_h, oy = r % p.out_h;
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_row = out + std::int64_t{r} * p.out_w * cout;
    for (int ox = 0; ox < p.out_w; ++ox) {
      float* __restrict acc = out_row + std::int64_t{ox} * cout;
      for (int co = 0; co < cout; ++co) acc[co] = bias ? bias[co] : 0.0f;
      for (int ky = 0; ky < p.k_h; ++ky) {
        const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
        if (iy < 0) continue;
        for (int kx = 0; kx < p.k_w; ++kx) {
          const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
          if (ix < 0) continue;
          const float* pixel = image + (std::int64_t{iy} * p.in_w + ix) * cin;
          const float* w_tap = w + (std::int64_t{ky} * p.k_w + kx) * cin * cout;
          for (int ci = 0; ci < cin; ++ci) {
            const float a = pixel[ci];
            const float* __restrict w_row = w_tap + std::int64_t{ci} * cout;
            for (int co = 0; co < cout; ++co) acc[co] += a * w_row[co];
          }
        }
      }
    }
  });
}

void conv2d_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                           float* d_in) {
  const int rows = n * p.in_h;
  const int cin = p.in_c, cout = p.out_c;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.in_h, iy = r % p.in_h;
    const float* grad_image = d_out + std::int64_t{b} * p.out_size();
    float* d_row = d_in + std::int64_t{r} * p.in_w * cin;
    for (int ix = 0; ix < p.in_w; ++ix) {
      float* d = d_row + std::int64_t{ix} * cin;
      std::fill(d, d + cin, 0.0f);
      for (int ky = 0; ky < p.k_h; ++ky) {
        const int oy = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
        if (oy < 0) continue;
        for (int kx = 0; kx < p.k_w; ++kx) {
          const int ox = output_of_tap(ix, kx, p.stride_w, p.pad_left, p.out_w);
          if (ox < 0) continue;
          const float* g = grad_image + (std::int64_t{oy} * p.out_w + ox) * cout;
          const float* w_tap = w + (std::int64_t{ky} * p.k_w + kx) * cin * cout;
          for (int ci = 0; ci < cin; ++ci) {
            const float* w_row = w_tap + std::int64_t{ci} * cout;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int co = 0; co < cout; ++co) s += g[co] * w_row[co];
            d[ci] += s;
          }
        }
      }
    }
  });
}

namespace winograd {

bool forward_applies(const LayerParams& p) {
  return p.in_c == kChannels && p.k_h == kTaps && p.k_w == kTaps && p.stride_h == 1 &&
         p.stride_w == 1 && p.out_w <= kMaxTiles * kOutputs;
}

}  // namespace winograd

namespace gather {

bool applies(const LayerParams& p) {
  return p.stride_h == 1 && p.stride_w == 1 && p.k_h <= kMaxTaps && p.in_c <= kMaxChannels;
}

}  // namespace gather

}  // namespace stimloop::cpu
