// Depthwise k x k convolution by row tiles (3x3 and 5x5 kernels at column strides 1 and 2: every
// separable layer of the published models), forward and backward to the input, written once for
// any vector width: depthwise_avx512.cpp and depthwise_avx2.cpp instantiate it with their own
// lane types (avx512_lanes.h, avx2_lanes.h; why each file needs its own: winograd_forward.h).
//
// A block of kLanes channels of L::kDepthwiseTile pixels along a row at a time. Forward: for
// each kernel row, the input window the tile's outputs read ((tile - 1) * stride + k vectors) is
// loaded once into registers and serves all their taps, where a pixel at a time loaded every
// tap's input (AVX-512 layer 1 ran at 9 GMAC/s, bound by the loads). Backward (gathering,
// deterministic): the inputs of one column parity class (ix = t0, t0 + s, ...) meet the same
// kernel columns, at consecutive output columns, so the same window trick applies. Taps that fall
// outside the image read zeros from the window, which leaves every sum exactly as the per-pixel
// loop forms it (taps in (ky, kx) order, one FMA each): results are identical at every width.
//
// L provides, besides what winograd_forward.h lists: kDepthwiseTile, and keep_positive(v, mask,
// keep) = v where keep > 0 or NaN, else 0 (the scalar `keep <= 0 ? 0 : v`).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/ops.h"
#include "kernels/layer_params.h"

namespace stimloop::cpu::depthwise_rows {

// A channel block's loads and stores: plain when the block is full (Full), else through the mask
// (AVX2's masked loads cost more than plain ones: 46 channels ran at half speed).
template <typename L, bool Full>
typename L::V load_block(typename L::Mask m, const float* at) {
  if constexpr (Full) return L::load(at);
  return L::load_masked(m, at);
}
template <typename L, bool Full>
void store_block(float* at, typename L::Mask m, typename L::V v) {
  if constexpr (Full) return L::store(at, v);
  L::store_masked(at, m, v);
}
template <typename L, bool Full>
typename L::V load_or_zero(bool inside, typename L::Mask m, const float* at) {
  return inside ? load_block<L, Full>(m, at) : L::zero();
}

// Output row oy of one image, channels c0 .. c0 + kLanes - 1 (mask m), column stride SW, KW
// columns.
template <typename L, bool Full, int SW, int KW>
void forward_row(const LayerParams& p, const float* image, int oy, int c0, typename L::Mask m,
                 const float* w, const float* bias, float* out_row) {
  using V = typename L::V;
  constexpr int kTile = L::kDepthwiseTile;
  constexpr int kWindow = (kTile - 1) * SW + KW;
  const int c = p.in_c;
  const V init = load_or_zero<L, Full>(bias != nullptr, m, bias != nullptr ? bias + c0 : nullptr);
  for (int ox0 = 0; ox0 < p.out_w; ox0 += kTile) {
    V acc[kTile];
#pragma GCC unroll 16
    for (int j = 0; j < kTile; ++j) acc[j] = init;
    const int ix0 = ox0 * SW - p.pad_left;
    const bool interior = ix0 >= 0 && ix0 + kWindow <= p.in_w;
    for (int ky = 0; ky < p.k_h; ++ky) {
      const int iy = oy * p.stride_h - p.pad_top + ky;
      if (iy < 0 || iy >= p.in_h) continue;
      const float* row = image + std::int64_t{iy} * p.in_w * c + c0;
      // Fully unrolled (as every loop over the tile here), so that the window and the sums
      // stay in registers: left to GCC's judgement, both lived on the stack and the kernel ran
      // at a sixth of its load-bound speed. Interior tiles load without bounds tests.
      V win[kWindow];
      const float* at = row + std::int64_t{ix0} * c;
      if (interior) {
#pragma GCC unroll 32
        for (int u = 0; u < kWindow; ++u) win[u] = load_block<L, Full>(m, at + u * c);
      } else {
#pragma GCC unroll 32
        for (int u = 0; u < kWindow; ++u) {
          const int ix = ix0 + u;
          win[u] = load_or_zero<L, Full>(ix >= 0 && ix < p.in_w, m, row + std::int64_t{ix} * c);
        }
      }
#pragma GCC unroll 8
      for (int kx = 0; kx < KW; ++kx) {
        const V wv = load_block<L, Full>(m, w + (ky * KW + kx) * c + c0);
#pragma GCC unroll 16
        for (int j = 0; j < kTile; ++j) acc[j] = L::fmadd(win[j * SW + kx], wv, acc[j]);
      }
    }
    const int count = std::min(kTile, p.out_w - ox0);
#pragma GCC unroll 16
    for (int j = 0; j < count; ++j) {
      store_block<L, Full>(out_row + std::int64_t{ox0 + j} * c + c0, m, acc[j]);
    }
  }
}

// Input row iy of one image's d_in, channels c0 .. c0 + kLanes - 1. Columns ix = t0 + SW * j of
// one parity class meet kernel columns kx = kx0 + SW * mm at output columns base - mm + j.
template <typename L, bool Full, int SW, int KW>
void backward_row(const LayerParams& p, const float* grad_image, int iy, int c0, typename L::Mask m,
                  const float* w, const float* keep_row, float* d_row) {
  using V = typename L::V;
  constexpr int kTile = L::kDepthwiseTile;
  constexpr int kTaps = (KW + SW - 1) / SW;  // kernel columns per class, at most
  constexpr int kWindow = kTile + kTaps - 1;
  const int c = p.in_c;
  for (int r = 0; r < SW; ++r) {
    for (int t0 = r; t0 < p.in_w; t0 += kTile * SW) {
      V acc[kTile];
#pragma GCC unroll 16
      for (int j = 0; j < kTile; ++j) acc[j] = L::zero();
      const int kx0 = (t0 + p.pad_left) % SW, base = (t0 + p.pad_left - kx0) / SW;
      const bool interior = base - (kTaps - 1) >= 0 && base + kTile <= p.out_w;
      for (int ky = 0; ky < p.k_h; ++ky) {
        const int ty = iy + p.pad_top - ky;  // = oy * stride_h
        if (ty < 0 || ty % p.stride_h != 0 || ty / p.stride_h >= p.out_h) continue;
        const float* row = grad_image + std::int64_t{ty / p.stride_h} * p.out_w * c + c0;
        V win[kWindow];
        const int ox0 = base - (kTaps - 1);
        if (interior) {
          const float* at = row + std::int64_t{ox0} * c;
#pragma GCC unroll 32
          for (int u = 0; u < kWindow; ++u) win[u] = load_block<L, Full>(m, at + u * c);
        } else {
#pragma GCC unroll 32
          for (int u = 0; u < kWindow; ++u) {
            const int ox = ox0 + u;
            win[u] = load_or_zero<L, Full>(ox >= 0 && ox < p.out_w, m, row + std::int64_t{ox} * c);
          }
        }
#pragma GCC unroll 8
        for (int mm = 0; mm < kTaps; ++mm) {
          const int kx = kx0 + SW * mm;
          const V wv = load_or_zero<L, Full>(kx < KW, m, w + (ky * KW + kx) * c + c0);
#pragma GCC unroll 16
          for (int j = 0; j < kTile; ++j) {
            acc[j] = L::fmadd(win[j - mm + kTaps - 1], wv, acc[j]);
          }
        }
      }
#pragma GCC unroll 16
      for (int j = 0; j < kTile; ++j) {
        const int ix = t0 + SW * j;
        if (ix >= p.in_w) break;
        const std::int64_t at = std::int64_t{ix} * c + c0;
        const V v = keep_row != nullptr ? L::keep_positive(acc[j], m, keep_row + at) : acc[j];
        store_block<L, Full>(d_row + at, m, v);
      }
    }
  }
}

// Calls f(integral_constant<SW>, integral_constant<KW>) for the shapes the row tiles take
// (3 or 5 wide, at most 5 rows, column stride 1 or 2); false for the others.
template <typename F>
bool with_row_tile_shape(const LayerParams& p, F f) {
  using std::integral_constant;
  if (p.k_h > 5) return false;
  if (p.k_w == 5 && p.stride_w == 1)
    return f(integral_constant<int, 1>{}, integral_constant<int, 5>{}), true;
  if (p.k_w == 5 && p.stride_w == 2)
    return f(integral_constant<int, 2>{}, integral_constant<int, 5>{}), true;
  if (p.k_w == 3 && p.stride_w == 1)
    return f(integral_constant<int, 1>{}, integral_constant<int, 3>{}), true;
  if (p.k_w == 3 && p.stride_w == 2)
    return f(integral_constant<int, 2>{}, integral_constant<int, 3>{}), true;
  return false;
}

// The forward over all rows and channel blocks; false (nothing done) for shapes the tiles do
// not take.
template <typename L>
bool forward(const LayerParams& p, int n, const float* in, const float* w, const float* bias,
             float* out) {
  return with_row_tile_shape(p, [&](auto sw, auto kw) {
    constexpr int SW = decltype(sw)::value, KW = decltype(kw)::value;
    const int rows = n * p.out_h;
    for_each_row(rows, worth_threads(p, n), [&](int r) {
      const int b = r / p.out_h, oy = r % p.out_h;
      const float* image = in + std::int64_t{b} * p.in_size();
      float* out_row = out + std::int64_t{r} * p.out_w * p.in_c;
      for (int c0 = 0; c0 < p.in_c; c0 += L::kLanes) {
        if (p.in_c - c0 >= L::kLanes) {
          forward_row<L, true, SW, KW>(p, image, oy, c0, L::mask(L::kLanes), w, bias, out_row);
        } else {
          forward_row<L, false, SW, KW>(p, image, oy, c0, L::mask(p.in_c - c0), w, bias, out_row);
        }
      }
    });
  });
}

// The backward to the input, d_in zero where in_relu <= 0 when given; false as forward.
template <typename L>
bool backward(const LayerParams& p, int n, const float* d_out, const float* w, float* d_in,
              const float* in_relu) {
  return with_row_tile_shape(p, [&](auto sw, auto kw) {
    constexpr int SW = decltype(sw)::value, KW = decltype(kw)::value;
    const int rows = n * p.in_h;
    for_each_row(rows, worth_threads(p, n), [&](int r) {
      const int b = r / p.in_h, iy = r % p.in_h;
      const float* grad_image = d_out + std::int64_t{b} * p.out_size();
      const std::int64_t row_at = std::int64_t{r} * p.in_w * p.in_c;
      const float* keep_row = in_relu != nullptr ? in_relu + row_at : nullptr;
      for (int c0 = 0; c0 < p.in_c; c0 += L::kLanes) {
        if (p.in_c - c0 >= L::kLanes) {
          backward_row<L, true, SW, KW>(p, grad_image, iy, c0, L::mask(L::kLanes), w, keep_row,
                                        d_in + row_at);
        } else {
          backward_row<L, false, SW, KW>(p, grad_image, iy, c0, L::mask(p.in_c - c0), w, keep_row,
                                         d_in + row_at);
        }
      }
    });
  });
}

}  // namespace stimloop::cpu::depthwise_rows
