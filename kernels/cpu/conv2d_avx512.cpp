// The dense k x k convolution (layer 0 of every compact model, and the pointwise layers seen as
// 1x1 convolutions) with AVX-512F, forward. Compiled with -mavx512f -mfma and only called after a
// run-time check (cpu_features.h); the plain loops in conv2d.cpp stay the reference.
//
// It runs as a small GEMM per output row without an im2col buffer: in channels-last layout the
// inputs one kernel row of one output pixel reads are k_w * in_c consecutive floats, and so are
// the matching weights ([ky][kx][ci][co]), so the reduction is a flat loop of k_h runs of
// k_w * in_c steps (5 x 15 for layer 0). Register tiling: NB blocks of 16 output channels times P
// output pixels in accumulators (24 of the 32 zmm registers), so each weight vector loaded serves
// P FMAs and each broadcast input serves NB. Pixel tiles that touch the padding or run past the
// row's end read a small zero-padded copy of their input window instead, so the inner loop never
// tests a tap.
//
// Every output element is computed by one thread in a fixed order (results do not depend on the
// thread count); they differ from the plain loops only by float rounding.
#include "kernels/cpu/conv2d_avx512.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/padded_window.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/winograd_f4x5.h"

namespace stimloop::cpu {
namespace avx512 {
namespace {

// Pixels per micro-tile for NB channel blocks: P * NB = 24 accumulators (16 for one block, where
// more pixels would only add broadcast loads; 20 for five), leaving registers for the NB weight
// vectors.
template <int NB>
constexpr int kFullPixels = NB == 1   ? 16
                            : NB == 2 ? 12
                            : NB == 3 ? 8
                            : NB == 4 ? 6
                                      : 4;
constexpr int kMaxTilePixels = 16;

// What the micro-tiles of one output row read.
struct RowInputs {
  const float* rows[kMaxTaps];  // per kernel row: pixel 0's first input, or null (in the padding)
  const float* weights;         // packed, at the pass's first channel block
  int k_h, span, step, cp;      // span = k_w * in_c steps per kernel row; step = stride_w * in_c
};

// One micro-tile: P output pixels x NB blocks of 16 channels starting at channel co0.
template <int P, int NB>
void micro_tile(const RowInputs& in, const float* bias, bool relu, int co0, int cout, int pixels,
                float* out) {
  __m512 acc[P][NB];
  for (int j = 0; j < NB; ++j) {
    const int co = co0 + j * kLanes;
    const __m512 init = bias == nullptr ? _mm512_setzero_ps()
                                        : _mm512_maskz_loadu_ps(lane_mask(cout - co), bias + co);
    for (int x = 0; x < P; ++x) acc[x][j] = init;
  }
  for (int ky = 0; ky < in.k_h; ++ky) {
    const float* src = in.rows[ky];
    if (src == nullptr) continue;
    const float* w = in.weights + std::int64_t{ky} * in.span * in.cp;
    const float* px[P];
    for (int x = 0; x < P; ++x) px[x] = src + std::int64_t{x} * in.step;
    for (int t = 0; t < in.span; ++t, w += in.cp) {
      __m512 wv[NB];
      for (int j = 0; j < NB; ++j) wv[j] = _mm512_loadu_ps(w + j * kLanes);
      for (int x = 0; x < P; ++x) {
        const __m512 a = _mm512_set1_ps(px[x][t]);
        for (int j = 0; j < NB; ++j) acc[x][j] = _mm512_fmadd_ps(a, wv[j], acc[x][j]);
      }
    }
  }
  // Over all P with a test, not up to `pixels`, and fully unrolled: with constant indices acc
  // stays in registers (an indexed acc would live in memory, stored at every step).
#pragma GCC unroll 16
  for (int x = 0; x < P; ++x) {
    if (x >= pixels) break;
    float* dst = out + std::int64_t{x} * cout;
    for (int j = 0; j < NB; ++j) {
      const int co = co0 + j * kLanes;
      // max(0, acc) in this operand order passes a NaN on, as std::max(acc, 0) in dispatch.cpp
      // does; the masked form only avoids GCC 12's warning about the plain one's undefined vector.
      const __m512 v =
          relu ? _mm512_mask_max_ps(acc[x][j], 0xFFFF, _mm512_setzero_ps(), acc[x][j]) : acc[x][j];
      _mm512_mask_storeu_ps(dst + co, lane_mask(cout - co), v);
    }
  }
}

// Layer 0's shape (stride 1, a kernel row of KW * CIN = 15 taps) in rows too long for the
// Winograd kernel (over 1024 outputs; winograd_forward.h takes every published model), one
// channel block at a time:
// a kernel row's 15 weight vectors stay in registers beside P = 14 accumulators, and each input
// of the row window is broadcast once for every pixel of the tile whose kernel row covers it (5
// of them). micro_tile loads a broadcast input for every NB FMAs, which with one block (the
// 15-filter model) is one load per FMA: here 69 loads serve 210 FMAs a kernel row. Inputs are
// visited by residue mod 15, so consecutive ones feed disjoint pixels: in ascending order they
// fed the same five accumulators back to back and the FMA latency bound the loop (layer 0 of
// the 15-filter model, one thread: 0.234 ms micro_tile, 0.195 ascending, 0.157 by residue;
// 46 filters: 0.50 -> 0.44 ms, 57: 0.69 -> 0.61). Each pixel's taps are summed in a fixed order,
// a different one from micro_tile's (the tail of a row), which changes only float rounding.
template <int P, int KW, int CIN>
void sliding_tile(const RowInputs& in, const float* bias, bool relu, int co0, int cout,
                  float* out) {
  constexpr int kSpan = KW * CIN, kWindow = (P - 1) * CIN + kSpan;
  static_assert(kSpan + P + 1 <= 32, "weights, accumulators and one input in zmm registers");
  __m512 acc[P];
  const __m512 init = bias == nullptr ? _mm512_setzero_ps()
                                      : _mm512_maskz_loadu_ps(lane_mask(cout - co0), bias + co0);
#pragma GCC unroll 32
  for (int x = 0; x < P; ++x) acc[x] = init;
  for (int ky = 0; ky < in.k_h; ++ky) {
    const float* src = in.rows[ky];
    if (src == nullptr) continue;
    const float* w = in.weights + std::int64_t{ky} * kSpan * in.cp;
    __m512 wv[kSpan];
#pragma GCC unroll 32
    for (int t = 0; t < kSpan; ++t) wv[t] = _mm512_loadu_ps(w + std::int64_t{t} * in.cp);
#pragma GCC unroll 32
    for (int r = 0; r < kSpan; ++r) {  // inputs r, r + kSpan, ...: they feed disjoint pixels
#pragma GCC unroll 32
      for (int i = r; i < kWindow; i += kSpan) {
        const __m512 a = _mm512_set1_ps(src[i]);
#pragma GCC unroll 32
        for (int x = 0; x < P; ++x) {
          const int t = i - x * CIN;
          if (t >= 0 && t < kSpan) acc[x] = _mm512_fmadd_ps(a, wv[t], acc[x]);
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int x = 0; x < P; ++x) {
    const __m512 v =
        relu ? _mm512_mask_max_ps(acc[x], 0xFFFF, _mm512_setzero_ps(), acc[x]) : acc[x];
    _mm512_mask_storeu_ps(out + std::int64_t{x} * cout + co0, lane_mask(cout - co0), v);
  }
}

// Pixels per sliding tile: 15 weights + 14 accumulators + 1 input of the 32 registers.
constexpr int kSlidingPixels = 14;

struct Geometry {
  const LayerParams* p;
  const float* packed;
  const float* bias;
  bool relu;
  int cp;
  bool sliding;  // stride 1, 5 x 3 taps a kernel row: sliding_tile applies
};

// Points in.rows at the inputs of pixels ox0 .. ox0 + P - 1 of output row oy: straight into the
// image when every tap of the tile is inside it, else into a zero-padded copy in `window`.
void point_rows(const Geometry& g, const float* image, int oy, int ox0, int P, float* window,
                RowInputs& in) {
  const LayerParams& p = *g.p;
  const int cin = p.in_c;
  const int first_ix = ox0 * p.stride_w - p.pad_left;
  const int cols = (P - 1) * p.stride_w + p.k_w;
  const bool inside = first_ix >= 0 && first_ix + cols <= p.in_w;
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
    if (iy < 0) {
      in.rows[ky] = nullptr;
      continue;
    }
    const float* image_row = image + std::int64_t{iy} * p.in_w * cin;
    if (inside) {
      in.rows[ky] = image_row + std::int64_t{first_ix} * cin;
      continue;
    }
    float* dst = window + std::int64_t{ky} * cols * cin;
    copy_padded<Lanes512>(image_row, p.in_w, first_ix, cols, cin, dst);
    in.rows[ky] = dst;
  }
}

// The smallest tile size of {full, 8, 4, 2, 1} that covers `left` pixels (the row's tail).
template <int NB>
int tile_pixels(int left) {
  constexpr int full = kFullPixels<NB>;
  if (left >= full) return full;
  if (left > 4) return 8 < full ? (left > 8 ? full : 8) : full;
  return left > 2 ? 4 : left;
}

template <int P, int NB>
void tile_at(const Geometry& g, const float* image, int oy, int ox0, int b0, float* window,
             float* out_row) {
  const LayerParams& p = *g.p;
  RowInputs in;
  point_rows(g, image, oy, ox0, P, window, in);
  in.weights = g.packed + b0 * kLanes;
  in.k_h = p.k_h, in.span = p.k_w * p.in_c, in.step = p.stride_w * p.in_c, in.cp = g.cp;
  const int pixels = p.out_w - ox0 < P ? p.out_w - ox0 : P;
  micro_tile<P, NB>(in, g.bias, g.relu, b0 * kLanes, p.out_c, pixels,
                    out_row + std::int64_t{ox0} * p.out_c);
}

// Full sliding tiles of one output row, from pixel 0; returns the first pixel left for row_pass.
int sliding_row(const Geometry& g, const float* image, int oy, float* window, float* out_row) {
  const LayerParams& p = *g.p;
  int ox0 = 0;
  for (; ox0 + kSlidingPixels <= p.out_w; ox0 += kSlidingPixels) {
    RowInputs in;
    point_rows(g, image, oy, ox0, kSlidingPixels, window, in);
    in.k_h = p.k_h, in.cp = g.cp;
    for (int co0 = 0; co0 < p.out_c; co0 += kLanes) {
      in.weights = g.packed + co0;
      sliding_tile<kSlidingPixels, 5, 3>(in, g.bias, g.relu, co0, p.out_c,
                                         out_row + std::int64_t{ox0} * p.out_c);
    }
  }
  return ox0;
}

// One pass of NB channel blocks over output pixels ox0.. of a row.
template <int NB>
void row_pass(const Geometry& g, const float* image, int oy, int b0, float* window, float* out_row,
              int ox0 = 0) {
  const int out_w = g.p->out_w;
  for (; ox0 < out_w;) {
    const int P = tile_pixels<NB>(out_w - ox0);
    if (P == kFullPixels<NB>) {
      tile_at<kFullPixels<NB>, NB>(g, image, oy, ox0, b0, window, out_row);
    } else if (P == 8) {
      if constexpr (8 < kFullPixels<NB>) tile_at<8, NB>(g, image, oy, ox0, b0, window, out_row);
    } else if (P == 4) {
      tile_at<4, NB>(g, image, oy, ox0, b0, window, out_row);
    } else if (P == 2) {
      tile_at<2, NB>(g, image, oy, ox0, b0, window, out_row);
    } else {
      tile_at<1, NB>(g, image, oy, ox0, b0, window, out_row);
    }
    ox0 += P;
  }
}

// Channel blocks per pass: up to 5 (4 pixels), 4 (6 pixels) or 3 (8 pixels), splitting e.g. 7
// blocks as 4 + 3 rather than leaving one block alone. Five in one pass (the largest model's
// 57 -> 72 pointwise layer) rather than 3 + 2, which read the inputs twice: 0.244 -> 0.229 ms.
int pass_blocks(int left) {
  if (left <= 5) return left;
  return left % 3 == 0 ? 3 : 4;
}

}  // namespace

int packed_width(int out_c) { return round_up(out_c, kLanes); }

void conv_forward_packed(const LayerParams& p, int n, const float* in, const float* packed,
                         const float* bias, float* out) {
  const int cp = packed_width(p.out_c), blocks = cp / kLanes;
  const Geometry g{&p, packed, bias, p.relu, cp, p.stride_w == 1 && p.k_w == 5 && p.in_c == 3};
  const std::size_t window_floats =
      std::size_t(p.k_h) * ((kMaxTilePixels - 1) * p.stride_w + p.k_w) * p.in_c;
  const int rows = n * p.out_h;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.out_h, oy = r % p.out_h;
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_row = out + std::int64_t{r} * p.out_w * p.out_c;
    float* window = scratch_floats(ScratchSlot::kWindow, window_floats);
    const int ox0 = g.sliding ? sliding_row(g, image, oy, window, out_row) : 0;
    for (int b0 = 0; b0 < blocks;) {
      const int nb = pass_blocks(blocks - b0);
      switch (nb) {
        case 5:
          row_pass<5>(g, image, oy, b0, window, out_row, ox0);
          break;
        case 4:
          row_pass<4>(g, image, oy, b0, window, out_row, ox0);
          break;
        case 3:
          row_pass<3>(g, image, oy, b0, window, out_row, ox0);
          break;
        case 2:
          row_pass<2>(g, image, oy, b0, window, out_row, ox0);
          break;
        default:
          row_pass<1>(g, image, oy, b0, window, out_row, ox0);
          break;
      }
      b0 += nb;
    }
  });
}

}  // namespace avx512

void conv2d_forward_avx512(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out) {
  if (p.k_h > kMaxTaps) {  // taller kernels than the row table holds: never in the models
    conv2d_forward_avx2(p, n, in, w, bias, out);
    if (p.relu) {
      for (std::int64_t i = 0; i < std::int64_t{n} * p.out_size(); ++i) {
        out[i] = out[i] > 0.0f ? out[i] : 0.0f;
      }
    }
    return;
  }
  if (winograd::forward_applies(p)) {  // layer 0
    avx512::conv_forward_winograd(p, n, in, w, bias, out);
    return;
  }
  // w[ky][kx][ci][co] -> packed[ky][kx][ci][co padded to 16 lanes]; the weights of one call,
  // packed on the calling thread and read by all.
  const int cp = avx512::packed_width(p.out_c);
  const std::int64_t taps = std::int64_t{p.k_h} * p.k_w * p.in_c;
  float* packed = scratch_floats(ScratchSlot::kWeights, std::size_t(taps) * cp);
  for (std::int64_t t = 0; t < taps; ++t) {
    std::memcpy(packed + t * cp, w + t * p.out_c, sizeof(float) * p.out_c);
    std::memset(packed + t * cp + p.out_c, 0, sizeof(float) * (cp - p.out_c));
  }
  avx512::conv_forward_packed(p, n, in, packed, bias, out);
}

}  // namespace stimloop::cpu
