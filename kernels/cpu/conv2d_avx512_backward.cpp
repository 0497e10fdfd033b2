// Backward to the input of the dense convolution with AVX-512F (see conv2d_avx512.cpp for the
// forward). Compiled with -mavx512f -mfma, called only when use_avx512().
//
// With stride 1, d_in[iy,ix,ci] = sum over (ky, kx, co) of d_out[iy+pad-ky, ix+pad-kx, co] *
// w[ky,kx,ci,co]: a forward convolution of d_out with the kernel flipped and its channel axes
// swapped. Two ways to run it, by the number of input channels:
//  - many (pointwise layers): exactly that forward convolution (conv_forward_packed), vectorised
//    over the input channels;
//  - at most 4 (layer 0: RGB): 16 lanes over input channels would stay mostly empty, so the
//    lanes run along the reduction instead. For one kernel row, the output gradients an input
//    pixel gathers are k_w * out_c consecutive floats (kx reversed), so d_in[ix, ci] is a dot
//    product of that run with a matching run of repacked weights, summed over ky. X input pixels
//    x in_c channels of 16-lane partial sums stay in registers (24 for RGB), each gradient
//    vector loaded serves in_c FMAs and each weight vector X; the lanes are added up once per
//    pixel at the end. Tiles at the borders read a zero-padded copy of their window.
// Other strides, and a Dense layer (1x1 image, where repacking its large weight matrix would
// cost more than the product), go to the AVX2 kernel.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/conv2d_avx512.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"

namespace stimloop::cpu {
namespace {

using avx512::kLanes;
using avx512::lane_mask;
using avx512::round_up;
using avx512::sum_lanes;

// Below this many input pixels per call the flipped weights are not worth repacking.
constexpr std::int64_t kMinPixelsForFlip = 64;
constexpr int kMaxGatherChannels = 4;

// --- many input channels: a forward convolution of d_out ---------------------------------------

void backward_as_forward(const LayerParams& p, int n, const float* d_out, const float* w,
                         float* d_in) {
  LayerParams q = p;  // input: d_out; output: d_in; same kernel size, stride 1
  q.in_h = p.out_h, q.in_w = p.out_w, q.in_c = p.out_c;
  q.out_h = p.in_h, q.out_w = p.in_w, q.out_c = p.in_c;
  q.pad_top = p.k_h - 1 - p.pad_top, q.pad_left = p.k_w - 1 - p.pad_left;
  q.relu = false;  // the caller has applied the ReLU mask to d_out
  // packed[ky'][kx'][co][ci] = w[k_h-1-ky'][k_w-1-kx'][ci][co], ci padded to 16 lanes.
  const int cp = avx512::packed_width(p.in_c);
  const std::int64_t taps = std::int64_t{p.k_h} * p.k_w;
  float* packed = scratch_floats(ScratchSlot::kWeights, std::size_t(taps * p.out_c * cp));
  for (int ky = 0; ky < p.k_h; ++ky) {
    for (int kx = 0; kx < p.k_w; ++kx) {
      const float* src =
          w + ((std::int64_t{p.k_h - 1 - ky} * p.k_w + (p.k_w - 1 - kx)) * p.in_c * p.out_c);
      float* dst = packed + (std::int64_t{ky} * p.k_w + kx) * p.out_c * cp;
      for (int co = 0; co < p.out_c; ++co) {
        float* d = dst + std::int64_t{co} * cp;
        for (int ci = 0; ci < p.in_c; ++ci) d[ci] = src[std::int64_t{ci} * p.out_c + co];
        std::memset(d + p.in_c, 0, sizeof(float) * (cp - p.in_c));
      }
    }
  }
  avx512::conv_forward_packed(q, n, d_out, packed, nullptr, d_in);
}

// --- few input channels: dot products along the gathered run ------------------------------------

// Input pixels per tile for NC input channels: X * NC = 24 (16 for one channel) accumulators.
template <int NC>
constexpr int kGatherPixels = NC == 1   ? 16
                              : NC == 2 ? 12
                              : NC == 3 ? 8
                                        : 6;

struct GatherRow {
  const float* rows[kMaxTaps];  // per kernel row: the run of input pixel 0 (null: no output row)
  const float* weights;         // [ky][ci][run padded to 16], kx reversed
  int k_h, run, run_padded, pixel_step, cin;
};

template <int X, int NC>
void gather_tile(const GatherRow& in, int pixels, float* d) {
  __m512 acc[X][NC];
  for (int x = 0; x < X; ++x) {
    for (int c = 0; c < NC; ++c) acc[x][c] = _mm512_setzero_ps();
  }
  for (int ky = 0; ky < in.k_h; ++ky) {
    if (in.rows[ky] == nullptr) continue;
    const float* g[X];
    for (int x = 0; x < X; ++x) g[x] = in.rows[ky] + std::int64_t{x} * in.pixel_step;
    const float* w = in.weights + std::int64_t{ky} * in.cin * in.run_padded;
    // One loop for full and partial chunks: the gradients are read through a lane mask (a run
    // ends where the next pixel's begins, or at the end of d_out); the weights are zero-padded.
    for (int at = 0; at < in.run; at += kLanes) {
      const __mmask16 mask = lane_mask(in.run - at);
      __m512 wv[NC];
      for (int c = 0; c < NC; ++c)
        wv[c] = _mm512_loadu_ps(w + std::int64_t{c} * in.run_padded + at);
      for (int x = 0; x < X; ++x) {
        const __m512 gv = _mm512_maskz_loadu_ps(mask, g[x] + at);
        for (int c = 0; c < NC; ++c) acc[x][c] = _mm512_fmadd_ps(gv, wv[c], acc[x][c]);
      }
    }
  }
  // Over all X with a test, not up to `pixels`, and fully unrolled: with constant indices acc
  // stays in registers (an indexed acc would live in memory, stored at every step).
#pragma GCC unroll 16
  for (int x = 0; x < X; ++x) {
    if (x >= pixels) break;
    for (int c = 0; c < NC; ++c) d[std::int64_t{x} * in.cin + c] = sum_lanes(acc[x][c]);
  }
}

// Points in.rows at the gradient runs of input pixels ix0 .. ix0 + X - 1 of input row iy: into
// d_out itself when every tap of the tile lands inside it, else into a zero-padded copy.
void point_gather_rows(const LayerParams& p, const float* grad_image, int iy, int ix0, int X,
                       float* window, GatherRow& in) {
  const int cout = p.out_c;
  const int first_ox = ix0 + p.pad_left - (p.k_w - 1);  // pixel 0's run starts at kx = k_w - 1
  const int cols = X + p.k_w - 1;
  const bool inside = first_ox >= 0 && first_ox + cols <= p.out_w;
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int oy = output_of_tap(iy, ky, 1, p.pad_top, p.out_h);
    if (oy < 0) {
      in.rows[ky] = nullptr;
      continue;
    }
    const float* grad_row = grad_image + std::int64_t{oy} * p.out_w * cout;
    if (inside) {
      in.rows[ky] = grad_row + std::int64_t{first_ox} * cout;
      continue;
    }
    float* dst = window + std::int64_t{ky} * cols * cout;
    avx512::copy_padded(grad_row, p.out_w, first_ox, cols, cout, dst);
    in.rows[ky] = dst;
  }
}

template <int NC>
void backward_gather(const LayerParams& p, int n, const float* d_out, const float* weights,
                     int run_padded, float* d_in) {
  constexpr int X = kGatherPixels<NC>;
  const std::size_t window_floats = std::size_t(p.k_h) * (X + p.k_w - 1) * p.out_c;
  const int rows = n * p.in_h;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.in_h, iy = r % p.in_h;
    const float* grad_image = d_out + std::int64_t{b} * p.out_size();
    float* d_row = d_in + std::int64_t{r} * p.in_w * NC;
    float* window = scratch_floats(ScratchSlot::kWindow, window_floats);
    GatherRow in;
    in.weights = weights;
    in.k_h = p.k_h, in.run = p.k_w * p.out_c, in.run_padded = run_padded;
    in.pixel_step = p.out_c, in.cin = NC;
    for (int ix0 = 0; ix0 < p.in_w; ix0 += X) {
      point_gather_rows(p, grad_image, iy, ix0, X, window, in);
      const int pixels = p.in_w - ix0 < X ? p.in_w - ix0 : X;
      gather_tile<X, NC>(in, pixels, d_row + std::int64_t{ix0} * NC);
    }
  });
}

void backward_few_channels(const LayerParams& p, int n, const float* d_out, const float* w,
                           float* d_in) {
  // packed[ky][ci][j * out_c + co] = w[ky][k_w-1-j][ci][co]: the run of pixel ix starts at
  // output column ix + pad - (k_w - 1), i.e. at tap kx = k_w - 1.
  const int run = p.k_w * p.out_c, run_padded = round_up(run, kLanes);
  float* packed =
      scratch_floats(ScratchSlot::kWeights, std::size_t(p.k_h) * p.in_c * std::size_t(run_padded));
  for (int ky = 0; ky < p.k_h; ++ky) {
    for (int ci = 0; ci < p.in_c; ++ci) {
      float* dst = packed + (std::int64_t{ky} * p.in_c + ci) * run_padded;
      for (int j = 0; j < p.k_w; ++j) {
        const float* src =
            w + ((std::int64_t{ky} * p.k_w + (p.k_w - 1 - j)) * p.in_c + ci) * p.out_c;
        std::memcpy(dst + std::int64_t{j} * p.out_c, src, sizeof(float) * p.out_c);
      }
      std::memset(dst + run, 0, sizeof(float) * (run_padded - run));
    }
  }
  switch (p.in_c) {
    case 1:
      backward_gather<1>(p, n, d_out, packed, run_padded, d_in);
      break;
    case 2:
      backward_gather<2>(p, n, d_out, packed, run_padded, d_in);
      break;
    case 3:
      backward_gather<3>(p, n, d_out, packed, run_padded, d_in);
      break;
    default:
      backward_gather<4>(p, n, d_out, packed, run_padded, d_in);
      break;
  }
}

}  // namespace

void conv2d_backward_input_avx512(const LayerParams& p, int n, const float* d_out, const float* w,
                                  float* d_in) {
  const bool unit_stride = p.stride_h == 1 && p.stride_w == 1;
  if (unit_stride && p.k_h <= kMaxTaps && p.in_c <= kMaxGatherChannels) {
    backward_few_channels(p, n, d_out, w, d_in);
  } else if (unit_stride && p.k_h <= kMaxTaps &&
             std::int64_t{n} * p.in_h * p.in_w >= kMinPixelsForFlip) {
    backward_as_forward(p, n, d_out, w, d_in);
  } else {
    conv2d_backward_input_avx2(p, n, d_out, w, d_in);
  }
}

}  // namespace stimloop::cpu
