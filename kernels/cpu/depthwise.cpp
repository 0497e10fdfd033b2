#include <algorithm>
#include <cstdint>

#include "kernels/cpu/ops.h"

namespace stimloop::cpu {

void depthwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                       const float* bias, float* out) {
  const int rows = n * p.out_h;
  const int c = p.in_c;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.out_h, oy = r % p.out_h;
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_row = out + std::int64_t{r} * p.out_w * c;
    for (int ox = 0; ox < p.out_w; ++ox) {
      float* __restrict acc = out_row + std::int64_t{ox} * c;
      for (int ch = 0; ch < c; ++ch) acc[ch] = bias ? bias[ch] : 0.0f;
      for (int ky = 0; ky < p.k_h; ++ky) {
        const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
        if (iy < 0) continue;
        for (int kx = 0; kx < p.k_w; ++kx) {
          const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
          if (ix < 0) continue;
          const float* __restrict pixel = image + (std::int64_t{iy} * p.in_w + ix) * c;
          const float* __restrict w_tap = w + (std::int64_t{ky} * p.k_w + kx) * c;
          for (int ch = 0; ch < c; ++ch) acc[ch] += pixel[ch] * w_tap[ch];
        }
      }
    }
  });
}

void depthwise_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                              float* d_in, const float* in_relu) {
  const int rows = n * p.in_h;
  const int c = p.in_c;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.in_h, iy = r % p.in_h;
    const float* grad_image = d_out + std::int64_t{b} * p.out_size();
    float* d_row = d_in + std::int64_t{r} * p.in_w * c;
    for (int ix = 0; ix < p.in_w; ++ix) {
      float* __restrict d = d_row + std::int64_t{ix} * c;
      std::fill(d, d + c, 0.0f);
      for (int ky = 0; ky < p.k_h; ++ky) {
        const int oy = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
        if (oy < 0) continue;
        for (int kx = 0; kx < p.k_w; ++kx) {
          const int ox = output_of_tap(ix, kx, p.stride_w, p.pad_left, p.out_w);
          if (ox < 0) continue;
          const float* __restrict g = grad_image + (std::int64_t{oy} * p.out_w + ox) * c;
          const float* __restrict w_tap = w + (std::int64_t{ky} * p.k_w + kx) * c;
          for (int ch = 0; ch < c; ++ch) d[ch] += g[ch] * w_tap[ch];
        }
      }
      if (in_relu != nullptr) {
        const float* act = in_relu + (std::int64_t{r} * p.in_w + ix) * c;
        for (int ch = 0; ch < c; ++ch) d[ch] = act[ch] <= 0.0f ? 0.0f : d[ch];
      }
    }
  });
}

}  // namespace stimloop::cpu
