// Layer 0 of every compact model (a 5x5 convolution at stride 1 over the 3 colour channels, the
// bulk of a forward pass) with Winograd's F(4, 5) along each row (winograd_f4x5.h), written once
// for any vector width: conv2d_winograd_avx512.cpp and conv2d_winograd_avx2.cpp instantiate it
// with their own lane types (see "Instantiation" below).
//
// Why: the direct kernels run 75 multiply-accumulates per output and channel, the AVX-512 one
// already at the FMA units' peak. Transforming each row's inputs once, and each kernel row's taps
// once per call, turns a tile of 4 outputs into 8 products per (kernel row, input channel): 30
// multiply-accumulates per output, plus a few additions in the transforms.
//
// How: for output row y, tile t (outputs 4t .. 4t + 3) and point j,
//   M_j[t][co] = sum_{ky, ci} V[y + ky][j][ci][t] * U[j][ky][ci][co]
// is a small GEMM (K = 15) per point, where V = B^T d are the transformed input rows (computed
// once per padded input row, shared by the 5 output rows that read it) and U = G g the
// transformed taps; the 4 outputs are A^T M, then ReLU. The GEMM micro-tile keeps P tiles x NB
// blocks of output channels in accumulators and parks each point's sums in a small stack buffer
// until all 8 are there. Rows along y and the channels are as in the direct convolution; only
// the x direction is transformed.
//
// Accuracy: on layer 0 of the largest compact model and a natural image, max error 5e-7 of the
// output's scale against float64 (the direct float32 kernel: 2e-7). Every output element is
// computed by one thread in a fixed order, so results do not depend on the thread count. A NaN
// or infinity in the input reaches the 8 outputs of the two tiles whose windows hold it (the
// direct kernel: the 5 outputs whose taps read it).
//
// Instantiation: every function here is a template on the lane type L, and each ISA file passes a
// type of its own anonymous namespace, so each file's copies are its own and keep its
// instruction set (a plain inline function would be merged across files by the linker, which
// could then run AVX-512 code on an AVX2-only processor). L provides: kLanes, kMaxPassBlocks,
// group_tiles(nb); the vector type V and the mask type Mask; zero, set1, load, store, fmadd,
// add, sub, mul, relu, mask(count), load_masked, store_masked.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/winograd_f4x5.h"
#include "kernels/layer_params.h"

namespace stimloop::cpu::winograd {

template <typename L>
struct Plan {
  const LayerParams* p;
  int tiles;           // ceil(out_w / 4)
  int tpad;            // tiles rounded up to a vector: the length of a V run
  std::int64_t v_row;  // floats per transformed input row: kPoints * kChannels * tpad
  int v_rows;          // out_h + kTaps - 1 padded input rows
  int cp;              // output channels rounded up to whole vectors
  const float* u;      // [j][ky][ci][cp]
  const float* bias;   // null: none
  bool relu;
};

// ---- transforms

// U[j][ky][ci][co] = sum_kx G[j][kx] * w[ky][kx][ci][co] (w as Keras stores it), zeros in the
// padding lanes; on the calling thread.
template <typename L>
void transform_weights(const LayerParams& p, const float* w, int cp, float* u) {
  using V = typename L::V;
  for (int j = 0; j < kPoints; ++j) {
    for (int ky = 0; ky < kTaps; ++ky) {
      for (int ci = 0; ci < kChannels; ++ci) {
        float* dst = u + ((std::int64_t{j} * kTaps + ky) * kChannels + ci) * cp;
        for (int c0 = 0; c0 < cp; c0 += L::kLanes) {
          const auto mask = L::mask(p.out_c - c0);
          V s = L::zero();
          for (int kx = 0; kx < kTaps; ++kx) {
            const float g = static_cast<float>(kFilterTransform[j][kx]);
            const float* src =
                w + ((std::int64_t{ky} * kTaps + kx) * kChannels + ci) * p.out_c + c0;
            s = L::fmadd(L::set1(g), L::load_masked(mask, src), s);
          }
          L::store(dst + c0, s);
        }
      }
    }
  }
}

// v[0 .. 7] = B^T d for a vector of tiles, d[l] = the tiles' l-th inputs. B^T factored into the
// halves its paired rows share: rows 1 and 2 are E + O and E - O with E from d2, d4, d6 and O from
// d1, d3, d5, and so are rows 3/4 and 5/6 (the points +-p).
template <typename L>
void input_transform(const typename L::V d[kPoints], typename L::V v[kPoints]) {
  using V = typename L::V;
  v[0] = L::fmadd(L::set1(21.0f / 4), L::sub(d[4], d[2]), L::sub(d[0], d[6]));
  v[7] = L::fmadd(L::set1(21.0f / 4), L::sub(d[3], d[5]), L::sub(d[7], d[1]));
  const V e1 = L::fmadd(L::set1(-17.0f / 4), d[4], L::add(d[2], d[6]));
  const V o1 = L::fmadd(L::set1(-17.0f / 4), d[3], L::add(d[1], d[5]));
  v[1] = L::add(e1, o1);
  v[2] = L::sub(e1, o1);
  const V e3 = L::fmadd(L::set1(1.0f / 4), d[2], L::fmadd(L::set1(-5.0f / 4), d[4], d[6]));
  const V o3 =
      L::fmadd(L::set1(1.0f / 2), d[1], L::fmadd(L::set1(-5.0f / 2), d[3], L::add(d[5], d[5])));
  v[3] = L::add(e3, o3);
  v[4] = L::sub(e3, o3);
  const V e5 = L::fmadd(L::set1(4.0f), d[2], L::fmadd(L::set1(-5.0f), d[4], d[6]));
  const V o5 = L::fmadd(L::set1(2.0f), d[1],
                        L::fmadd(L::set1(-5.0f / 2), d[3], L::mul(L::set1(0.5f), d[5])));
  v[5] = L::add(e5, o5);
  v[6] = L::sub(e5, o5);
}

// y[0 .. 3] = A^T m, factored the same way: a, b are the sum and difference of the products at
// the points +-1, s2, d2 those at +-2, s5, d5 those at +-1/2.
template <typename L>
void output_transform(const typename L::V m[kPoints], typename L::V y[kOutputs]) {
  using V = typename L::V;
  const V a = L::add(m[1], m[2]), b = L::sub(m[1], m[2]);
  const V s2 = L::add(m[3], m[4]), d2 = L::sub(m[3], m[4]);
  const V s5 = L::add(m[5], m[6]), d5 = L::sub(m[5], m[6]);
  y[0] = L::add(L::add(m[0], a), L::add(s2, s5));
  y[1] = L::fmadd(L::set1(0.5f), d5, L::fmadd(L::set1(2.0f), d2, b));
  y[2] = L::fmadd(L::set1(0.25f), s5, L::fmadd(L::set1(4.0f), s2, a));
  y[3] = L::add(L::fmadd(L::set1(0.125f), d5, L::fmadd(L::set1(8.0f), d2, b)), m[7]);
}

// Transformed input row r (padded coordinates: input row r - pad_top) of one image:
// V[r][j][ci][t] for every tile t < tpad, zeros for rows in the padding.
template <typename L>
void transform_input_row(const Plan<L>& g, const float* image, int r, float* v_all) {
  using V = typename L::V;
  const LayerParams& p = *g.p;
  float* dst = v_all + r * g.v_row;
  const int iy = r - p.pad_top;
  if (iy < 0 || iy >= p.in_h) {
    std::memset(dst, 0, sizeof(float) * g.v_row);
    return;
  }
  // The row deinterleaved by 4: phase[ci][q][s] = input column 4s + q - pad_left (zero outside),
  // so a tile's l-th input for a vector of consecutive tiles is one load at [l % 4][t + l / 4].
  constexpr int kPhaseLen = kMaxTiles + 2 * 16;
  float phase[kChannels][4][kPhaseLen];
  const float* row = image + std::int64_t{iy} * p.in_w * kChannels;
  for (int s = 0; s <= g.tpad; ++s) {
    for (int q = 0; q < 4; ++q) {
      const int ix = 4 * s + q - p.pad_left;
      const bool inside = ix >= 0 && ix < p.in_w;
      for (int ci = 0; ci < kChannels; ++ci) {
        phase[ci][q][s] = inside ? row[ix * kChannels + ci] : 0;
      }
    }
  }
  for (int ci = 0; ci < kChannels; ++ci) {
    for (int t0 = 0; t0 < g.tpad; t0 += L::kLanes) {
      V d[kPoints], v[kPoints];
      for (int l = 0; l < kPoints; ++l) d[l] = L::load(&phase[ci][l % 4][t0 + l / 4]);
      input_transform<L>(d, v);
      for (int j = 0; j < kPoints; ++j) {
        L::store(dst + (std::int64_t{j} * kChannels + ci) * g.tpad + t0, v[j]);
      }
    }
  }
}

// ---- the per-point GEMM and the outputs

// Tiles t0 .. t0 + P - 1 of output row y, channel blocks b0 .. b0 + NB - 1. A group past the
// row's last tile (at most 3 tiles past it) reads V's padding, the next (point, channel) run or
// the zeroed slack after the last one, whatever their values: those tiles are never stored.
template <typename L, int P, int NB>
void tile_group(const Plan<L>& g, const float* v_all, int y, int t0, int b0, float* out_row) {
  using V = typename L::V;
  constexpr int kL = L::kLanes;
  const LayerParams& p = *g.p;
  alignas(64) float parked[kPoints][P][NB][kL];
  // The bias enters through the products at the point 1, whose column of A^T is all ones: each
  // of the tile's 4 outputs gets it once, with no addition of its own.
  V bias[NB];
#pragma GCC unroll 4
  for (int n = 0; n < NB; ++n) {
    const int co = (b0 + n) * kL;
    bias[n] = g.bias == nullptr ? L::zero() : L::load_masked(L::mask(p.out_c - co), g.bias + co);
  }
  for (int j = 0; j < kPoints; ++j) {
    V acc[P][NB];
#pragma GCC unroll 32
    for (int x = 0; x < P; ++x) {
#pragma GCC unroll 4
      for (int n = 0; n < NB; ++n) acc[x][n] = j == 1 ? bias[n] : L::zero();
    }
    for (int ky = 0; ky < kTaps; ++ky) {
      const float* v = v_all + (y + ky) * g.v_row + std::int64_t{j} * kChannels * g.tpad + t0;
      const float* u = g.u + (std::int64_t{j} * kTaps + ky) * kChannels * g.cp + b0 * kL;
#pragma GCC unroll 3
      for (int ci = 0; ci < kChannels; ++ci) {
        V w[NB];
#pragma GCC unroll 4
        for (int n = 0; n < NB; ++n) w[n] = L::load(u + ci * g.cp + n * kL);
#pragma GCC unroll 32
        for (int x = 0; x < P; ++x) {
          const V a = L::set1(v[ci * g.tpad + x]);
#pragma GCC unroll 4
          for (int n = 0; n < NB; ++n) acc[x][n] = L::fmadd(a, w[n], acc[x][n]);
        }
      }
    }
#pragma GCC unroll 32
    for (int x = 0; x < P; ++x) {
#pragma GCC unroll 4
      for (int n = 0; n < NB; ++n) L::store(parked[j][x][n], acc[x][n]);
    }
  }
  for (int x = 0; x < P; ++x) {
    const int ox0 = (t0 + x) * kOutputs;
    if (ox0 >= p.out_w) break;
    const int count = std::min(p.out_w - ox0, kOutputs);
    for (int n = 0; n < NB; ++n) {
      const int co = (b0 + n) * kL;
      const auto mask = L::mask(p.out_c - co);
      V m[kPoints], y4[kOutputs];
      for (int j = 0; j < kPoints; ++j) m[j] = L::load(parked[j][x][n]);
      output_transform<L>(m, y4);
      for (int i = 0; i < count; ++i) {
        const V o = g.relu ? L::relu(y4[i]) : y4[i];
        L::store_masked(out_row + std::int64_t{ox0 + i} * p.out_c + co, mask, o);
      }
    }
  }
}

// Output row y, channel blocks b0 .. b0 + NB - 1, all tiles: full groups, then one of 8, 4, 2 or 1
// tiles for the rest (112-pixel rows, 28 tiles, divide evenly into the full groups or leave 4).
template <typename L, int NB>
void row_pass(const Plan<L>& g, const float* v_all, int y, int b0, float* out_row) {
  constexpr int full = L::group_tiles(NB);
  for (int t0 = 0; t0 < g.tiles;) {
    const int left = g.tiles - t0;
    if (left >= full) {
      tile_group<L, full, NB>(g, v_all, y, t0, b0, out_row);
      t0 += full;
    } else if (left > 4) {  // 5 .. full - 1 tiles: a group of 8, or a full one when smaller
      constexpr int tail = 8 < full ? 8 : full;
      tile_group<L, tail, NB>(g, v_all, y, t0, b0, out_row);
      t0 += tail;
    } else if (left > 2) {
      tile_group<L, 4, NB>(g, v_all, y, t0, b0, out_row);
      t0 += 4;
    } else if (left == 2) {
      tile_group<L, 2, NB>(g, v_all, y, t0, b0, out_row);
      t0 += 2;
    } else {
      tile_group<L, 1, NB>(g, v_all, y, t0, b0, out_row);
      t0 += 1;
    }
  }
}

// All channel blocks of output row y, in as few passes of at most kMaxPassBlocks as there can be,
// split evenly (7 blocks as 4 + 3 rather than 4 + 2 + 1).
template <typename L>
void output_row(const Plan<L>& g, const float* v_all, int y, float* out_row) {
  const int blocks = g.cp / L::kLanes;
  for (int b0 = 0; b0 < blocks;) {
    const int left = blocks - b0;
    const int passes = (left + L::kMaxPassBlocks - 1) / L::kMaxPassBlocks;
    const int nb = (left + passes - 1) / passes;
    if constexpr (L::kMaxPassBlocks >= 4) {
      if (nb == 4) row_pass<L, 4>(g, v_all, y, b0, out_row);
    }
    if (nb == 3) row_pass<L, 3>(g, v_all, y, b0, out_row);
    if (nb == 2) row_pass<L, 2>(g, v_all, y, b0, out_row);
    if (nb == 1) row_pass<L, 1>(g, v_all, y, b0, out_row);
    b0 += nb;
  }
}

// out = the convolution of `in` (n images) with w (Keras layout [ky][kx][ci][co]) plus bias
// (null: none), then max(0, .) when `relu`. Needs forward_applies(p) (winograd_f4x5.h).
template <typename L>
void forward(const LayerParams& p, int n, const float* in, const float* w, const float* bias,
             bool relu, float* out) {
  Plan<L> g;
  g.p = &p;
  g.tiles = (p.out_w + kOutputs - 1) / kOutputs;
  g.tpad = (g.tiles + L::kLanes - 1) / L::kLanes * L::kLanes;
  g.v_row = std::int64_t{kPoints} * kChannels * g.tpad;
  g.v_rows = p.out_h + kTaps - 1;
  g.cp = (p.out_c + L::kLanes - 1) / L::kLanes * L::kLanes;
  g.bias = bias;
  g.relu = relu;
  // Both on the calling thread, read by all: the transformed taps, and one image's transformed
  // rows (a tile group past the row's end may read a few floats beyond the last V run: zeros).
  float* u = scratch_floats(ScratchSlot::kTransformedWeights,
                            std::size_t(kPoints) * kTaps * kChannels * g.cp);
  transform_weights<L>(p, w, g.cp, u);
  g.u = u;
  constexpr int kSlack = 16;
  float* v_all =
      scratch_floats(ScratchSlot::kTransformedInput, std::size_t(g.v_rows) * g.v_row + kSlack);
  std::memset(v_all + std::size_t(g.v_rows) * g.v_row, 0, sizeof(float) * kSlack);
  const bool threads = worth_threads(p, 1);
  for (int b = 0; b < n; ++b) {
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_image = out + std::int64_t{b} * p.out_size();
    for_each_row(g.v_rows, threads, [&](int r) { transform_input_row<L>(g, image, r, v_all); });
    for_each_row(p.out_h, threads, [&](int y) {
      output_row<L>(g, v_all, y, out_image + std::int64_t{y} * p.out_w * p.out_c);
    });
  }
}

}  // namespace stimloop::cpu::winograd
