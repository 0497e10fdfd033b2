// The row loops the vector depthwise kernels share (depthwise_avx2.cpp, depthwise_avx512.cpp):
// which input pixels each output pixel's taps read (forward), and which output gradients each
// input pixel's taps touched (backward), worked out once per row and pixel rather than per tap.
// The ISA-specific part is `pixel`, a callable that computes one pixel's channels from a
// `source(ky, kx)` returning the tap's data (null: none). Templates instantiated inside each
// kernel file with its own lambda types, so every copy keeps its file's instruction set.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/cpu/ops.h"

namespace stimloop::cpu {

// Calls f(std::integral_constant<int, NB>{}) with NB = blocks, clamped to [1, 8]: a run-time block
// count into a compile-time one, so a pixel's accumulators stay in registers.
template <typename F>
void with_block_count(int blocks, F f) {
  switch (blocks) {
    case 1:
      f(std::integral_constant<int, 1>{});
      break;
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    case 3:
      f(std::integral_constant<int, 3>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 5:
      f(std::integral_constant<int, 5>{});
      break;
    case 6:
      f(std::integral_constant<int, 6>{});
      break;
    case 7:
      f(std::integral_constant<int, 7>{});
      break;
    default:
      f(std::integral_constant<int, 8>{});
      break;
  }
}

// pixel(source, dst): out[b, oy, ox, :] from the taps over `in`.
template <typename Pixel>
void depthwise_forward_rows(const LayerParams& p, int n, const float* in, float* out, Pixel pixel) {
  const int rows = n * p.out_h;
  const int c = p.in_c;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.out_h, oy = r % p.out_h;
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_row = out + std::int64_t{r} * p.out_w * c;
    int iy_of[kMaxTaps];
    for (int ky = 0; ky < p.k_h; ++ky) {
      iy_of[ky] = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
    }
    for (int ox = 0; ox < p.out_w; ++ox) {
      auto source = [&](int ky, int kx) -> const float* {
        const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
        if (iy_of[ky] < 0 || ix < 0) return nullptr;
        return image + (std::int64_t{iy_of[ky]} * p.in_w + ix) * c;
      };
      pixel(source, out_row + std::int64_t{ox} * c);
    }
  });
}

// pixel(source, keep, dst): d_in[b, iy, ix, :] from the output gradients its taps touched;
// keep = in_relu at that pixel (null when no mask).
template <typename Pixel>
void depthwise_backward_rows(const LayerParams& p, int n, const float* d_out, float* d_in,
                             const float* in_relu, Pixel pixel) {
  const int rows = n * p.in_h;
  const int c = p.in_c;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.in_h, iy = r % p.in_h;
    const float* grad_image = d_out + std::int64_t{b} * p.out_size();
    int oy_of[kMaxTaps], ox_of[kMaxTaps];
    for (int ky = 0; ky < p.k_h; ++ky) {
      oy_of[ky] = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
    }
    for (int ix = 0; ix < p.in_w; ++ix) {
      for (int kx = 0; kx < p.k_w; ++kx) {
        ox_of[kx] = output_of_tap(ix, kx, p.stride_w, p.pad_left, p.out_w);
      }
      auto source = [&](int ky, int kx) -> const float* {
        if (oy_of[ky] < 0 || ox_of[kx] < 0) return nullptr;
        return grad_image + (std::int64_t{oy_of[ky]} * p.out_w + ox_of[kx]) * c;
      };
      const std::int64_t at = (std::int64_t{r} * p.in_w + ix) * c;
      pixel(source, in_relu != nullptr ? in_relu + at : nullptr, d_in + at);
    }
  });
}

}  // namespace stimloop::cpu
