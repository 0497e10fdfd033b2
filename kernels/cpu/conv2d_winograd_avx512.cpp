// Layer 0 of every compact model (a 5x5 convolution at stride 1 over the 3 colour channels, the
// bulk of a forward pass) with Winograd's F(4, 5) along each row (winograd_f4x5.h), AVX-512F.
//
// Why: the direct kernel (conv2d_avx512.cpp, sliding tiles) already runs at the FMA units' peak,
// 75 multiply-accumulates per output and channel. Transforming each row's inputs once, and each
// kernel row's taps once per call, turns a tile of 4 outputs into 8 products per (kernel row,
// input channel): 30 multiply-accumulates per output, plus a few additions in the transforms.
//
// How: for output row y, tile t (outputs 4t .. 4t + 3) and point j,
//   M_j[t][co] = sum_{ky, ci} V[y + ky][j][ci][t] * U[j][ky][ci][co]
// is a small GEMM (K = 15) per point, where V = B^T d are the transformed input rows (computed
// once per padded input row, shared by the 5 output rows that read it) and U = G g the
// transformed taps; the 4 outputs are A^T M, then bias and ReLU. The GEMM micro-tile keeps P tiles
// x NB blocks of 16 output channels in accumulators, as micro_tile does in the direct kernel, and
// parks each point's sums in a small stack buffer until all 8 are there. Rows along y and the
// channels are as in the direct convolution; only the x direction is transformed.
//
// Accuracy: on layer 0 of the largest compact model and a natural image, max error 5e-7 of the
// output's scale against float64 (the direct float32 kernel: 2e-7). Every output element is
// computed by one thread in a fixed order, so results do not depend on the thread count.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/conv2d_avx512.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/winograd_f4x5.h"
#include "kernels/cpu/winograd_f4x5_avx512.h"

namespace stimloop::cpu::avx512 {
namespace {

using winograd::kOutputs;
using winograd::kPoints;
constexpr int kTaps = winograd::kTaps;
constexpr int kChannels = 3;  // input channels (RGB)
// Tiles a row may hold: bounds the per-row deinterleave buffer on the stack (1024 pixels).
constexpr int kMaxTiles = 256;

// Tiles per GEMM micro-tile for NB channel blocks: P * NB accumulators (24 of the 32 registers,
// as in the direct kernel), beside NB weight vectors and one broadcast input.
template <int NB>
constexpr int kGroupTiles = NB == 1   ? 14
                            : NB == 2 ? 12
                            : NB == 3 ? 8
                                      : 6;

struct Plan {
  const LayerParams* p;
  int tiles;           // ceil(out_w / 4)
  int tpad;            // tiles rounded up to a vector: the length of a V run
  std::int64_t v_row;  // floats per transformed input row: kPoints * kChannels * tpad
  int v_rows;          // out_h + kTaps - 1 padded input rows
  int cp;              // packed output channels (a multiple of 16)
  const float* u;      // [j][ky][ci][cp]
  const float* bias;   // null: none
  bool relu;
};

// ---- transforms

// U[j][ky][ci][:] = sum_kx G[j][kx] * packed[ky][kx][ci][:], on the calling thread.
void transform_weights(const float* packed, int cp, float* u) {
  for (int j = 0; j < kPoints; ++j) {
    for (int ky = 0; ky < kTaps; ++ky) {
      for (int ci = 0; ci < kChannels; ++ci) {
        float* dst = u + ((std::int64_t{j} * kTaps + ky) * kChannels + ci) * cp;
        for (int c0 = 0; c0 < cp; c0 += kLanes) {
          __m512 s = _mm512_setzero_ps();
          for (int kx = 0; kx < kTaps; ++kx) {
            const float g = static_cast<float>(winograd::kFilterTransform[j][kx]);
            const float* w = packed + ((std::int64_t{ky} * kTaps + kx) * kChannels + ci) * cp + c0;
            s = _mm512_fmadd_ps(_mm512_set1_ps(g), _mm512_loadu_ps(w), s);
          }
          _mm512_storeu_ps(dst + c0, s);
        }
      }
    }
  }
}

// Transformed input row r (padded coordinates: input row r - pad_top) of one image:
// V[r][j][ci][t] for every tile t < tpad, zeros for rows in the padding.
void transform_input_row(const Plan& g, const float* image, int r, float* v_all) {
  const LayerParams& p = *g.p;
  float* dst = v_all + r * g.v_row;
  const int iy = r - p.pad_top;
  if (iy < 0 || iy >= p.in_h) {
    std::memset(dst, 0, sizeof(float) * g.v_row);
    return;
  }
  // The row deinterleaved by 4: phase[ci][q][s] = input column 4s + q - pad_left (zero outside),
  // so a tile's l-th input for 16 consecutive tiles is one unaligned load at [l % 4][t + l / 4].
  constexpr int kPhaseLen = kMaxTiles + 2 * kLanes;
  float phase[kChannels][4][kPhaseLen];
  const float* row = image + std::int64_t{iy} * p.in_w * kChannels;
  for (int s = 0; s <= g.tpad; ++s) {
    for (int q = 0; q < 4; ++q) {
      const int ix = 4 * s + q - p.pad_left;
      const bool inside = ix >= 0 && ix < p.in_w;
      for (int ci = 0; ci < kChannels; ++ci)
        phase[ci][q][s] = inside ? row[ix * kChannels + ci] : 0;
    }
  }
  for (int ci = 0; ci < kChannels; ++ci) {
    for (int t0 = 0; t0 < g.tpad; t0 += kLanes) {
      __m512 d[kPoints], v[kPoints];
      for (int l = 0; l < kPoints; ++l) d[l] = _mm512_loadu_ps(&phase[ci][l % 4][t0 + l / 4]);
      input_transform(d, v);
      for (int j = 0; j < kPoints; ++j) {
        _mm512_storeu_ps(dst + (std::int64_t{j} * kChannels + ci) * g.tpad + t0, v[j]);
      }
    }
  }
}

// ---- the per-point GEMM and the outputs

// Tiles t0 .. t0 + P - 1 of output row y, channel blocks b0 .. b0 + NB - 1. Tiles past the row's
// end read V's padding (finite values) and are not stored.
template <int P, int NB>
void tile_group(const Plan& g, const float* v_all, int y, int t0, int b0, float* out_row) {
  const LayerParams& p = *g.p;
  alignas(64) float parked[kPoints][P][NB][kLanes];
  // The bias enters through the products at the point 1, whose column of A^T is all ones: each
  // of the tile's 4 outputs gets it once, with no addition of its own.
  __m512 bias[NB];
#pragma GCC unroll 4
  for (int n = 0; n < NB; ++n) {
    const int co = (b0 + n) * kLanes;
    bias[n] = g.bias == nullptr ? _mm512_setzero_ps()
                                : _mm512_maskz_loadu_ps(lane_mask(p.out_c - co), g.bias + co);
  }
  for (int j = 0; j < kPoints; ++j) {
    __m512 acc[P][NB];
#pragma GCC unroll 32
    for (int x = 0; x < P; ++x) {
#pragma GCC unroll 4
      for (int n = 0; n < NB; ++n) acc[x][n] = j == 1 ? bias[n] : _mm512_setzero_ps();
    }
    for (int ky = 0; ky < kTaps; ++ky) {
      const float* v = v_all + (y + ky) * g.v_row + std::int64_t{j} * kChannels * g.tpad + t0;
      const float* u = g.u + (std::int64_t{j} * kTaps + ky) * kChannels * g.cp + b0 * kLanes;
#pragma GCC unroll 3
      for (int ci = 0; ci < kChannels; ++ci) {
        __m512 w[NB];
#pragma GCC unroll 4
        for (int n = 0; n < NB; ++n) w[n] = _mm512_loadu_ps(u + ci * g.cp + n * kLanes);
#pragma GCC unroll 32
        for (int x = 0; x < P; ++x) {
          const __m512 a = _mm512_set1_ps(v[ci * g.tpad + x]);
#pragma GCC unroll 4
          for (int n = 0; n < NB; ++n) acc[x][n] = _mm512_fmadd_ps(a, w[n], acc[x][n]);
        }
      }
    }
#pragma GCC unroll 32
    for (int x = 0; x < P; ++x) {
#pragma GCC unroll 4
      for (int n = 0; n < NB; ++n) _mm512_store_ps(parked[j][x][n], acc[x][n]);
    }
  }
  for (int x = 0; x < P; ++x) {
    const int ox0 = (t0 + x) * kOutputs;
    if (ox0 >= p.out_w) break;
    const int count = p.out_w - ox0 < kOutputs ? p.out_w - ox0 : kOutputs;
    for (int n = 0; n < NB; ++n) {
      const int co = (b0 + n) * kLanes;
      const __mmask16 mask = lane_mask(p.out_c - co);
      __m512 m[kPoints], y4[kOutputs];
      for (int j = 0; j < kPoints; ++j) m[j] = _mm512_load_ps(parked[j][x][n]);
      output_transform(m, y4);
      for (int i = 0; i < count; ++i) {
        __m512 o = y4[i];
        // max(0, o) in this operand order passes a NaN on, as the direct kernel does.
        if (g.relu) o = _mm512_mask_max_ps(o, 0xFFFF, _mm512_setzero_ps(), o);
        _mm512_mask_storeu_ps(out_row + std::int64_t{ox0 + i} * p.out_c + co, mask, o);
      }
    }
  }
}

// Output row y, channel blocks b0 .. b0 + NB - 1, all tiles: full groups, then one of 8, 4, 2 or 1
// tiles for the rest (112-pixel rows, 28 tiles, divide evenly into the full groups or leave 4).
template <int NB>
void row_pass(const Plan& g, const float* v_all, int y, int b0, float* out_row) {
  constexpr int full = kGroupTiles<NB>;
  for (int t0 = 0; t0 < g.tiles;) {
    const int left = g.tiles - t0;
    if (left >= full) {
      tile_group<full, NB>(g, v_all, y, t0, b0, out_row);
      t0 += full;
    } else if (left > 4) {  // 5 .. full - 1 tiles: a group of 8, or a full one when smaller
      constexpr int tail = 8 < full ? 8 : full;
      tile_group<tail, NB>(g, v_all, y, t0, b0, out_row);
      t0 += tail;
    } else if (left > 2) {
      tile_group<4, NB>(g, v_all, y, t0, b0, out_row);
      t0 += 4;
    } else if (left == 2) {
      tile_group<2, NB>(g, v_all, y, t0, b0, out_row);
      t0 += 2;
    } else {
      tile_group<1, NB>(g, v_all, y, t0, b0, out_row);
      t0 += 1;
    }
  }
}

// Channel blocks per pass, as in the direct kernel: up to 4, splitting 5 as 3 + 2, 7 as 4 + 3.
int pass_blocks(int left) {
  if (left <= 4) return left;
  return left == 5 || left % 3 == 0 ? 3 : 4;
}

void output_row(const Plan& g, const float* v_all, int y, float* out_row) {
  const int blocks = g.cp / kLanes;
  for (int b0 = 0; b0 < blocks;) {
    const int nb = pass_blocks(blocks - b0);
    switch (nb) {
      case 4:
        row_pass<4>(g, v_all, y, b0, out_row);
        break;
      case 3:
        row_pass<3>(g, v_all, y, b0, out_row);
        break;
      case 2:
        row_pass<2>(g, v_all, y, b0, out_row);
        break;
      default:
        row_pass<1>(g, v_all, y, b0, out_row);
        break;
    }
    b0 += nb;
  }
}

}  // namespace

bool winograd_applies(const LayerParams& p) {
  return p.in_c == kChannels && p.k_h == kTaps && p.k_w == kTaps && p.stride_h == 1 &&
         p.stride_w == 1 && p.out_w <= kMaxTiles * kOutputs;
}

void conv_forward_winograd(const LayerParams& p, int n, const float* in, const float* packed,
                           const float* bias, float* out) {
  Plan g;
  g.p = &p;
  g.tiles = (p.out_w + kOutputs - 1) / kOutputs;
  g.tpad = round_up(g.tiles, kLanes);
  g.v_row = std::int64_t{kPoints} * kChannels * g.tpad;
  g.v_rows = p.out_h + kTaps - 1;
  g.cp = packed_width(p.out_c);
  g.bias = bias;
  g.relu = p.relu;
  // Both on the calling thread, read by all: the transformed taps, and one image's transformed
  // rows (a tile group past the row's end reads up to 8 floats beyond the last V run).
  float* u = scratch_floats(ScratchSlot::kTransformedWeights,
                            std::size_t(kPoints) * kTaps * kChannels * g.cp);
  transform_weights(packed, g.cp, u);
  g.u = u;
  float* v_all =
      scratch_floats(ScratchSlot::kTransformedInput, std::size_t(g.v_rows) * g.v_row + 2 * kLanes);
  std::memset(v_all + std::size_t(g.v_rows) * g.v_row, 0, sizeof(float) * 2 * kLanes);
  const bool threads = worth_threads(p, 1);
  for (int b = 0; b < n; ++b) {
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_image = out + std::int64_t{b} * p.out_size();
    for_each_row(g.v_rows, threads, [&](int r) { transform_input_row(g, image, r, v_all); });
    for_each_row(p.out_h, threads, [&](int y) {
      output_row(g, v_all, y, out_image + std::int64_t{y} * p.out_w * p.out_c);
    });
  }
}

}  // namespace stimloop::cpu::avx512
