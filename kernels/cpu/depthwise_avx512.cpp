// Depthwise k x k convolution with AVX-512F, forward and backward to the input. Compiled with
// -mavx512f, called only when use_avx512(); the plain loops in depthwise.cpp stay the reference.
//
// Row tiles (3x3 and 5x5 kernels at column strides 1 and 2: every separable layer): a 16-channel
// block of 8 pixels along a row at a time. Forward: for each kernel row, the input window the 8
// outputs read ((8 - 1) * stride + k vectors) is loaded once into registers and serves all their
// taps, where a pixel at a time loaded every tap's input (layer 1 ran at 9 GMAC/s, bound by the
// loads). Backward (gathering, deterministic): the inputs of one column parity class (ix = t0,
// t0 + s, ...) meet the same kernel columns, at consecutive output columns, so the same window
// trick applies. Taps that fall outside the image read zeros from the window, which leaves every
// sum exactly as the per-pixel loop forms it (taps in (ky, kx) order, one FMA each).
//
// Other shapes (the shared models' 28x28 readout): per pixel, as depthwise_avx2.cpp with 16-lane
// blocks. Both give results identical to the AVX2 kernels.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/depthwise_rows.h"
#include "kernels/cpu/ops.h"

namespace stimloop::cpu {
namespace {

using avx512::kLanes;
using avx512::lane_mask;
constexpr int kMaxBlocks = 8;

// Channels c0 .. c0 + 16 * NB - 1 of one pixel (the last block `tail`-masked): acc = init + the
// taps `source(ky, kx)` maps to data (null: no tap); zero where keep <= 0 when keep is given.
template <int NB, typename Source>
void pixel_blocks(int k_h, int k_w, const float* w, int c, int c0, __mmask16 tail,
                  const float* init, const float* keep, Source source, float* dst) {
  auto mask_of = [&](int j) { return j + 1 < NB ? __mmask16(0xFFFF) : tail; };
  __m512 acc[NB];
  for (int j = 0; j < NB; ++j) {
    acc[j] = init == nullptr ? _mm512_setzero_ps()
                             : _mm512_maskz_loadu_ps(mask_of(j), init + c0 + j * kLanes);
  }
  for (int ky = 0; ky < k_h; ++ky) {
    for (int kx = 0; kx < k_w; ++kx) {
      const float* x = source(ky, kx);
      if (x == nullptr) continue;
      const float* w_tap = w + (std::int64_t{ky} * k_w + kx) * c + c0;
      for (int j = 0; j < NB; ++j) {
        const __m512 v = _mm512_maskz_loadu_ps(mask_of(j), x + c0 + j * kLanes);
        const __m512 wv = _mm512_maskz_loadu_ps(mask_of(j), w_tap + j * kLanes);
        acc[j] = _mm512_fmadd_ps(v, wv, acc[j]);
      }
    }
  }
  for (int j = 0; j < NB; ++j) {
    __mmask16 m = mask_of(j);
    float* at = dst + c0 + j * kLanes;
    if (keep != nullptr) {  // store zeros where keep <= 0 (NaN keeps, as `keep <= 0 ? 0 : d`)
      const __m512 k = _mm512_maskz_loadu_ps(m, keep + c0 + j * kLanes);
      const __mmask16 on = _mm512_cmp_ps_mask(k, _mm512_setzero_ps(), _CMP_NLE_UQ);
      acc[j] = _mm512_maskz_mov_ps(on, acc[j]);
    }
    _mm512_mask_storeu_ps(at, m, acc[j]);
  }
}

template <typename Source>
void pixel_all_channels(int k_h, int k_w, const float* w, int c, const float* init,
                        const float* keep, Source source, float* dst) {
  for (int c0 = 0; c0 < c; c0 += kMaxBlocks * kLanes) {
    const int channels = std::min(kMaxBlocks * kLanes, c - c0);
    const int blocks = (channels + kLanes - 1) / kLanes;
    const __mmask16 tail = lane_mask(channels - (blocks - 1) * kLanes);
    with_block_count(blocks, [&](auto nb) {
      pixel_blocks<decltype(nb)::value>(k_h, k_w, w, c, c0, tail, init, keep, source, dst);
    });
  }
}

// ---- row tiles
constexpr int kTile = 8;  // pixels per tile

__m512 load_or_zero(bool inside, __mmask16 m, const float* at) {
  return inside ? _mm512_maskz_loadu_ps(m, at) : _mm512_setzero_ps();
}

// Zero where keep <= 0 (NaN keeps, as the scalar `keep <= 0 ? 0 : d`).
__m512 apply_keep(__m512 v, __mmask16 m, const float* keep) {
  const __m512 k = _mm512_maskz_loadu_ps(m, keep);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(k, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
}

// Output row oy of one image, channels c0 .. c0 + 15 (mask m), column stride SW, KW columns.
template <int SW, int KW>
void forward_row(const LayerParams& p, const float* image, int oy, int c0, __mmask16 m,
                 const float* w, const float* bias, float* out_row) {
  constexpr int kWindow = (kTile - 1) * SW + KW;
  const int c = p.in_c;
  const __m512 init = load_or_zero(bias != nullptr, m, bias + c0);
  for (int ox0 = 0; ox0 < p.out_w; ox0 += kTile) {
    __m512 acc[kTile];
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
      __m512 win[kWindow];
      const float* at = row + std::int64_t{ix0} * c;
      if (interior) {
#pragma GCC unroll 32
        for (int u = 0; u < kWindow; ++u) win[u] = _mm512_maskz_loadu_ps(m, at + u * c);
      } else {
#pragma GCC unroll 32
        for (int u = 0; u < kWindow; ++u) {
          const int ix = ix0 + u;
          win[u] = load_or_zero(ix >= 0 && ix < p.in_w, m, row + std::int64_t{ix} * c);
        }
      }
#pragma GCC unroll 8
      for (int kx = 0; kx < KW; ++kx) {
        const __m512 wv = _mm512_maskz_loadu_ps(m, w + (ky * KW + kx) * c + c0);
#pragma GCC unroll 16
        for (int j = 0; j < kTile; ++j) acc[j] = _mm512_fmadd_ps(win[j * SW + kx], wv, acc[j]);
      }
    }
    const int count = std::min(kTile, p.out_w - ox0);
#pragma GCC unroll 16
    for (int j = 0; j < count; ++j) {
      _mm512_mask_storeu_ps(out_row + std::int64_t{ox0 + j} * c + c0, m, acc[j]);
    }
  }
}

// Input row iy of one image's d_in, channels c0 .. c0 + 15. Columns ix = t0 + SW * j of one parity
// class meet kernel columns kx = kx0 + SW * mm at output columns base - mm + j.
template <int SW, int KW>
void backward_row(const LayerParams& p, const float* grad_image, int iy, int c0, __mmask16 m,
                  const float* w, const float* keep_row, float* d_row) {
  constexpr int kTaps = (KW + SW - 1) / SW;  // kernel columns per class, at most
  constexpr int kWindow = kTile + kTaps - 1;
  const int c = p.in_c;
  for (int r = 0; r < SW; ++r) {
    for (int t0 = r; t0 < p.in_w; t0 += kTile * SW) {
      __m512 acc[kTile];
#pragma GCC unroll 16
      for (int j = 0; j < kTile; ++j) acc[j] = _mm512_setzero_ps();
      const int kx0 = (t0 + p.pad_left) % SW, base = (t0 + p.pad_left - kx0) / SW;
      const bool interior = base - (kTaps - 1) >= 0 && base + kTile <= p.out_w;
      for (int ky = 0; ky < p.k_h; ++ky) {
        const int ty = iy + p.pad_top - ky;  // = oy * stride_h
        if (ty < 0 || ty % p.stride_h != 0 || ty / p.stride_h >= p.out_h) continue;
        const float* row = grad_image + std::int64_t{ty / p.stride_h} * p.out_w * c + c0;
        __m512 win[kWindow];
        const int ox0 = base - (kTaps - 1);
        if (interior) {
          const float* at = row + std::int64_t{ox0} * c;
#pragma GCC unroll 32
          for (int u = 0; u < kWindow; ++u) win[u] = _mm512_maskz_loadu_ps(m, at + u * c);
        } else {
#pragma GCC unroll 32
          for (int u = 0; u < kWindow; ++u) {
            const int ox = ox0 + u;
            win[u] = load_or_zero(ox >= 0 && ox < p.out_w, m, row + std::int64_t{ox} * c);
          }
        }
#pragma GCC unroll 8
        for (int mm = 0; mm < kTaps; ++mm) {
          const int kx = kx0 + SW * mm;
          const __m512 wv = load_or_zero(kx < KW, m, w + (ky * KW + kx) * c + c0);
#pragma GCC unroll 16
          for (int j = 0; j < kTile; ++j) {
            acc[j] = _mm512_fmadd_ps(win[j - mm + kTaps - 1], wv, acc[j]);
          }
        }
      }
#pragma GCC unroll 16
      for (int j = 0; j < kTile; ++j) {
        const int ix = t0 + SW * j;
        if (ix >= p.in_w) break;
        const std::int64_t at = std::int64_t{ix} * c + c0;
        const __m512 v = keep_row != nullptr ? apply_keep(acc[j], m, keep_row + at) : acc[j];
        _mm512_mask_storeu_ps(d_row + at, m, v);
      }
    }
  }
}

// Calls f(integral_constant<SW>, integral_constant<KW>) for the shapes the row tiles take
// (square 3 or 5 wide, column stride 1 or 2); false for the others.
template <typename F>
bool with_row_tile_shape(const LayerParams& p, F f) {
  using std::integral_constant;
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

bool forward_row_tiles(const LayerParams& p, int n, const float* in, const float* w,
                       const float* bias, float* out) {
  return with_row_tile_shape(p, [&](auto sw, auto kw) {
    constexpr int SW = decltype(sw)::value, KW = decltype(kw)::value;
    const int rows = n * p.out_h;
    for_each_row(rows, worth_threads(p, n), [&](int r) {
      const int b = r / p.out_h, oy = r % p.out_h;
      const float* image = in + std::int64_t{b} * p.in_size();
      float* out_row = out + std::int64_t{r} * p.out_w * p.in_c;
      for (int c0 = 0; c0 < p.in_c; c0 += kLanes) {
        forward_row<SW, KW>(p, image, oy, c0, lane_mask(p.in_c - c0), w, bias, out_row);
      }
    });
  });
}

bool backward_row_tiles(const LayerParams& p, int n, const float* d_out, const float* w,
                        float* d_in, const float* in_relu) {
  return with_row_tile_shape(p, [&](auto sw, auto kw) {
    constexpr int SW = decltype(sw)::value, KW = decltype(kw)::value;
    const int rows = n * p.in_h;
    for_each_row(rows, worth_threads(p, n), [&](int r) {
      const int b = r / p.in_h, iy = r % p.in_h;
      const float* grad_image = d_out + std::int64_t{b} * p.out_size();
      const std::int64_t row_at = std::int64_t{r} * p.in_w * p.in_c;
      const float* keep_row = in_relu != nullptr ? in_relu + row_at : nullptr;
      for (int c0 = 0; c0 < p.in_c; c0 += kLanes) {
        backward_row<SW, KW>(p, grad_image, iy, c0, lane_mask(p.in_c - c0), w, keep_row,
                             d_in + row_at);
      }
    });
  });
}

}  // namespace

void depthwise_forward_avx512(const LayerParams& p, int n, const float* in, const float* w,
                              const float* bias, float* out) {
  if (p.k_h <= 5 && forward_row_tiles(p, n, in, w, bias, out)) return;
  depthwise_forward_rows(p, n, in, out, [&](auto source, float* dst) {
    pixel_all_channels(p.k_h, p.k_w, w, p.in_c, bias, nullptr, source, dst);
  });
}

void depthwise_backward_input_avx512(const LayerParams& p, int n, const float* d_out,
                                     const float* w, float* d_in, const float* in_relu) {
  if (p.k_h <= 5 && backward_row_tiles(p, n, d_out, w, d_in, in_relu)) return;
  depthwise_backward_rows(p, n, d_out, d_in, in_relu,
                          [&](auto source, const float* keep, float* dst) {
                            pixel_all_channels(p.k_h, p.k_w, w, p.in_c, nullptr, keep, source, dst);
                          });
}

}  // namespace stimloop::cpu
