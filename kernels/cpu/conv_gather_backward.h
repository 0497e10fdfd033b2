// Backward to the input of a dense convolution with few input channels (layer 0: RGB) at stride 1,
// written once for any vector width: conv2d_avx512_backward.cpp and conv2d_avx2.cpp instantiate
// it with their lane types (avx512_lanes.h, avx2_lanes.h; why each file needs its own type:
// winograd_forward.h).
//
// d_in[iy,ix,ci] = sum over (ky, kx, co) of d_out[iy+pad-ky, ix+pad-kx, co] * w[ky,kx,ci,co].
// Vector lanes over the few input channels would stay mostly empty, so they run along the
// reduction instead: for one kernel row, the output gradients an input pixel gathers are
// k_w * out_c consecutive floats (kx reversed), so d_in[ix, ci] is a dot product of that run with
// a matching run of repacked weights, summed over ky. X input pixels x NC channels of partial
// sums stay in registers (L::gather_pixels), each gradient vector loaded serves NC FMAs and each
// weight vector X; the lanes are added up once per pixel at the end. Tiles at the borders read a
// zero-padded copy of their window. Full chunks of a run load plainly, only its last partial one
// through a mask (AVX2's masked loads cost twice a plain one).
//
// L provides, besides what winograd_forward.h lists: gather_pixels(nc), sum_lanes(v), pin(v) (keeps
// v in a register: an empty asm the compiler cannot see through).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/padded_window.h"
#include "kernels/cpu/scratch.h"
#include "kernels/layer_params.h"

namespace stimloop::cpu::gather {

inline constexpr int kMaxChannels = 4;  // input channels this kernel takes

// The shapes it takes: stride 1, at most kMaxChannels input channels, kernels of at most kMaxTaps
// rows. Defined in conv2d.cpp, compiled without -m flags (why: winograd_f4x5.h).
bool applies(const LayerParams& p);

struct GatherRow {
  const float* rows[kMaxTaps];  // per kernel row: the run of input pixel 0 (null: no output row)
  const float* weights;         // [ky][ci][run padded to whole vectors], kx reversed
  int k_h, run, run_padded, pixel_step, cin;
};

// One chunk of kLanes run elements for every pixel and channel of a tile: plain loads, or the
// gradients through `tail` for the run's last partial chunk. Always inlined, so that acc stays
// in registers.
template <typename L, int X, int NC, bool Masked>
[[gnu::always_inline]] inline void gather_chunk(typename L::V (&acc)[X][NC],
                                                const float* const (&g)[X], const float* w,
                                                int run_padded, int at, typename L::Mask tail) {
  using V = typename L::V;
  V wv[NC];
  for (int c = 0; c < NC; ++c) wv[c] = L::load(w + std::int64_t{c} * run_padded + at);
  for (int x = 0; x < X; ++x) {
    V gv;
    if constexpr (Masked) {
      gv = L::load_masked(tail, g[x] + at);
    } else {
      gv = L::load(g[x] + at);
    }
    // In a register: left alone, GCC folds a plain load into each of the NC FMAs, which then
    // load it NC times (AVX-512 ran 1.5x slower than with masked loads, which it does not fold).
    L::pin(gv);
    for (int c = 0; c < NC; ++c) acc[x][c] = L::fmadd(gv, wv[c], acc[x][c]);
  }
}

template <typename L, int X, int NC>
void gather_tile(const GatherRow& in, int pixels, float* d) {
  using V = typename L::V;
  V acc[X][NC];
  for (int x = 0; x < X; ++x) {
    for (int c = 0; c < NC; ++c) acc[x][c] = L::zero();
  }
  const int full = in.run / L::kLanes * L::kLanes;
  const auto tail = L::mask(std::max(in.run - full, 1));
  for (int ky = 0; ky < in.k_h; ++ky) {
    if (in.rows[ky] == nullptr) continue;
    const float* g[X];
    for (int x = 0; x < X; ++x) g[x] = in.rows[ky] + std::int64_t{x} * in.pixel_step;
    const float* w = in.weights + std::int64_t{ky} * in.cin * in.run_padded;
    // The weights are zero-padded to whole vectors; the gradients of a run end where the next
    // pixel's begin, or at the end of d_out: its last partial chunk is read through a mask.
    for (int at = 0; at < full; at += L::kLanes) {
      gather_chunk<L, X, NC, false>(acc, g, w, in.run_padded, at, tail);
    }
    if (full < in.run) gather_chunk<L, X, NC, true>(acc, g, w, in.run_padded, full, tail);
  }
  // Over all X with a test, not up to `pixels`, and fully unrolled: with constant indices acc
  // stays in registers (an indexed acc would live in memory, stored at every step).
#pragma GCC unroll 16
  for (int x = 0; x < X; ++x) {
    if (x >= pixels) break;
    for (int c = 0; c < NC; ++c) d[std::int64_t{x} * in.cin + c] = L::sum_lanes(acc[x][c]);
  }
}

// Points in.rows at the gradient runs of input pixels ix0 .. ix0 + X - 1 of input row iy: into
// d_out itself when every tap of the tile lands inside it, else into a zero-padded copy.
template <typename L>
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
    cpu::copy_padded<L>(grad_row, p.out_w, first_ox, cols, cout, dst);
    in.rows[ky] = dst;
  }
}

template <typename L, int NC>
void backward_rows(const LayerParams& p, int n, const float* d_out, const float* weights,
                   int run_padded, float* d_in) {
  constexpr int X = L::gather_pixels(NC);
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
      point_gather_rows<L>(p, grad_image, iy, ix0, X, window, in);
      const int pixels = std::min(p.in_w - ix0, X);
      gather_tile<L, X, NC>(in, pixels, d_row + std::int64_t{ix0} * NC);
    }
  });
}

// d_in for the shapes applies() takes.
template <typename L>
void backward(const LayerParams& p, int n, const float* d_out, const float* w, float* d_in) {
  // packed[ky][ci][j * out_c + co] = w[ky][k_w-1-j][ci][co]: the run of pixel ix starts at
  // output column ix + pad - (k_w - 1), i.e. at tap kx = k_w - 1.
  const int run = p.k_w * p.out_c;
  const int run_padded = (run + L::kLanes - 1) / L::kLanes * L::kLanes;
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
      backward_rows<L, 1>(p, n, d_out, packed, run_padded, d_in);
      break;
    case 2:
      backward_rows<L, 2>(p, n, d_out, packed, run_padded, d_in);
      break;
    case 3:
      backward_rows<L, 3>(p, n, d_out, packed, run_padded, d_in);
      break;
    default:
      backward_rows<L, 4>(p, n, d_out, packed, run_padded, d_in);
      break;
  }
}

}  // namespace stimloop::cpu::gather
