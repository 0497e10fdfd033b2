// The dense k x k convolution (layer 0 of every compact model: three-quarters of its arithmetic)
// with AVX2 + FMA, forward and backward to the input. Compiled with -mavx2 -mfma and only called
// after a run-time check (cpu_features.h); the plain loops in conv2d.cpp stay the reference.
//
// Forward: output channels in blocks of 8 lanes (weights repacked with out_c padded to a multiple
// of 8, zeros in the padding), three output pixels at a time, so each weight vector loaded serves
// three FMAs and each broadcast input serves up to three weight vectors (9 accumulators of 16
// registers). Backward (gather form, per input pixel): dot products over output channels, 8 lanes
// at a time, for four input channels at once.
//
// Every output element is still computed by one thread in a fixed order, so results do not
// depend on the thread count; they differ from the plain loops by float rounding only (the sums
// are grouped by lanes), which the tests bound at 1e-5 relative.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "kernels/cpu/avx2_lanes.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/conv_gather_backward.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/winograd_f4x5.h"

namespace stimloop::cpu {
namespace {

using avx2::kLanes;
using avx2::lane_mask;
// 3 x 3 = 9 accumulators, 3 weight vectors and a broadcast: 13 of the 16 ymm registers. With
// 4 pixels (12 accumulators, no register to spare) GCC kept the sums on the stack and layer 0 ran
// a fifth slower (1.60-1.96 ms against 1.34 ms, one thread).
constexpr int kPixels = 3;         // output pixels per forward micro-tile
constexpr int kBlocksPerPass = 3;  // 8-channel blocks per pass

int round_up(int v, int m) { return (v + m - 1) / m * m; }

// w[ky][kx][ci][co] -> packed[ky][kx][ci][co_padded], in the calling thread's scratch (no
// std::vector code in this -mavx2 file: the linker could pick its copy for the whole program).
const float* pack_weights(const LayerParams& p, const float* w) {
  const int cp = round_up(p.out_c, kLanes);
  const std::int64_t taps = std::int64_t{p.k_h} * p.k_w * p.in_c;
  float* packed = scratch_floats(ScratchSlot::kWeights, static_cast<std::size_t>(taps) * cp);
  for (std::int64_t t = 0; t < taps; ++t) {
    std::copy(w + t * p.out_c, w + (t + 1) * p.out_c, packed + t * cp);
    std::fill(packed + t * cp + p.out_c, packed + (t + 1) * cp, 0.0f);
  }
  return packed;
}

}  // namespace

namespace {

struct ForwardGeometry {
  const LayerParams* p;
  const float* wp;          // packed weights
  const float* bias;        // may be null
  const float* zero_pixel;  // in_c zeros: what a tap in the padding reads
  int cp;                   // out_c padded to the lanes
};

// One micro-tile: kPixels output pixels (ox0...) of output row oy x NB blocks of 8 channels from
// block b0. NB is a template parameter so the 4 x NB accumulators stay in registers.
template <int NB>
void forward_tile(const ForwardGeometry& g, const float* image, int oy, int ox0, int pixels, int b0,
                  float* out_row) {
  const LayerParams& p = *g.p;
  const int cin = p.in_c, cout = p.out_c, cp = g.cp;
  __m256 acc[kPixels][NB];
  for (int j = 0; j < NB; ++j) {
    const int co = (b0 + j) * kLanes;
    const __m256 init =
        g.bias == nullptr ? _mm256_setzero_ps()
                          : _mm256_maskload_ps(g.bias + co, lane_mask(std::min(kLanes, cout - co)));
    for (int x = 0; x < kPixels; ++x) acc[x][j] = init;
  }
  // A tile whose pixels read only inside the image (every column tap valid): for one kernel row,
  // the (kx, ci) inputs of a pixel are k_w * cin consecutive floats, and so are the matching
  // weights, so the taps run as one flat loop with no padding checks.
  const int first_ix = ox0 * p.stride_w - p.pad_left;
  const int last_ix = (ox0 + kPixels - 1) * p.stride_w - p.pad_left + p.k_w - 1;
  const bool interior = pixels == kPixels && first_ix >= 0 && last_ix < p.in_w;
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
    if (iy < 0) continue;
    const float* image_row = image + std::int64_t{iy} * p.in_w * cin;
    if (interior) {
      const int span = p.k_w * cin;
      const std::int64_t step = std::int64_t{p.stride_w} * cin;
      const float* src = image_row + std::int64_t{first_ix} * cin;
      const float* w_row = g.wp + std::int64_t{ky} * span * cp + b0 * kLanes;
      for (int t = 0; t < span; ++t, w_row += cp) {
        __m256 wv[NB];
        for (int j = 0; j < NB; ++j) wv[j] = _mm256_loadu_ps(w_row + j * kLanes);
        for (int x = 0; x < kPixels; ++x) {
          const __m256 a = _mm256_broadcast_ss(src + x * step + t);
          for (int j = 0; j < NB; ++j) acc[x][j] = _mm256_fmadd_ps(a, wv[j], acc[x][j]);
        }
      }
      continue;
    }
    for (int kx = 0; kx < p.k_w; ++kx) {
      const float* src[kPixels];
      for (int x = 0; x < kPixels; ++x) {
        const int ix = x < pixels ? input_of_tap(ox0 + x, kx, p.stride_w, p.pad_left, p.in_w) : -1;
        src[x] = ix < 0 ? g.zero_pixel : image_row + std::int64_t{ix} * cin;
      }
      const float* w_row = g.wp + (std::int64_t{ky} * p.k_w + kx) * cin * cp + b0 * kLanes;
      for (int ci = 0; ci < cin; ++ci, w_row += cp) {
        __m256 wv[NB];
        for (int j = 0; j < NB; ++j) wv[j] = _mm256_loadu_ps(w_row + j * kLanes);
        for (int x = 0; x < kPixels; ++x) {
          const __m256 a = _mm256_broadcast_ss(src[x] + ci);
          for (int j = 0; j < NB; ++j) acc[x][j] = _mm256_fmadd_ps(a, wv[j], acc[x][j]);
        }
      }
    }
  }
  for (int x = 0; x < pixels; ++x) {
    float* dst = out_row + std::int64_t{ox0 + x} * cout;
    for (int j = 0; j < NB; ++j) {
      const int co = (b0 + j) * kLanes;
      const int count = std::min(kLanes, cout - co);
      if (count == kLanes) {
        _mm256_storeu_ps(dst + co, acc[x][j]);
      } else {
        _mm256_maskstore_ps(dst + co, lane_mask(count), acc[x][j]);
      }
    }
  }
}

}  // namespace

void conv2d_forward_avx2(const LayerParams& p, int n, const float* in, const float* w,
                         const float* bias, float* out) {
  if (winograd::forward_applies(p)) {  // layer 0
    avx2::conv_forward_winograd(p, n, in, w, bias, out);
    return;
  }
  const float* packed = pack_weights(p, w);
  float* zeros = scratch_floats(ScratchSlot::kWindow, static_cast<std::size_t>(p.in_c));
  std::fill(zeros, zeros + p.in_c, 0.0f);
  const int cp = round_up(p.out_c, kLanes), blocks = cp / kLanes;
  const ForwardGeometry g{&p, packed, bias, zeros, cp};
  const int rows = n * p.out_h;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.out_h, oy = r % p.out_h;
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_row = out + std::int64_t{r} * p.out_w * p.out_c;
    for (int ox0 = 0; ox0 < p.out_w; ox0 += kPixels) {
      const int pixels = std::min(kPixels, p.out_w - ox0);
      for (int b0 = 0; b0 < blocks; b0 += kBlocksPerPass) {
        switch (std::min(kBlocksPerPass, blocks - b0)) {
          case 3:
            forward_tile<3>(g, image, oy, ox0, pixels, b0, out_row);
            break;
          case 2:
            forward_tile<2>(g, image, oy, ox0, pixels, b0, out_row);
            break;
          default:
            forward_tile<1>(g, image, oy, ox0, pixels, b0, out_row);
            break;
        }
      }
    }
  });
}

namespace {

struct BackwardGeometry {
  const LayerParams* p;
  const float* wp;  // packed weights
  int cp, blocks;
  __m256i tail;  // valid lanes of the last output-channel block
};

// d_in for input pixels ix0 .. ix0 + X - 1 of input row iy, input channels ci0 .. ci0 + NC - 1.
// With X > 1 (stride 1, every tap of every pixel inside the output), adjacent input pixels read
// adjacent output gradients at each tap, so each weight vector loaded serves X pixels.
template <int X, int NC>
void backward_tile(const BackwardGeometry& g, const float* grad_image, int iy, int ix0, int ci0,
                   float* d_row) {
  const LayerParams& p = *g.p;
  const int cout = p.out_c, cp = g.cp, cin = p.in_c;
  __m256 acc[X][NC];
  for (int x = 0; x < X; ++x) {
    for (int c = 0; c < NC; ++c) acc[x][c] = _mm256_setzero_ps();
  }
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int oy = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
    if (oy < 0) continue;
    for (int kx = 0; kx < p.k_w; ++kx) {
      const int ox = output_of_tap(ix0, kx, p.stride_w, p.pad_left, p.out_w);
      if (ox < 0) continue;  // X > 1 tiles are chosen so that this never happens
      const float* grad = grad_image + (std::int64_t{oy} * p.out_w + ox) * cout;
      const float* w_tap = g.wp + ((std::int64_t{ky} * p.k_w + kx) * cin + ci0) * cp;
      for (int blk = 0; blk < g.blocks; ++blk) {
        const int co = blk * kLanes;
        __m256 wv[NC];
        for (int c = 0; c < NC; ++c) wv[c] = _mm256_loadu_ps(w_tap + c * cp + co);
        for (int x = 0; x < X; ++x) {
          // The gradient row is not padded: the last block reads only its valid lanes.
          const float* gx = grad + std::int64_t{x} * cout + co;
          const __m256 gv =
              blk + 1 < g.blocks ? _mm256_loadu_ps(gx) : _mm256_maskload_ps(gx, g.tail);
          for (int c = 0; c < NC; ++c) acc[x][c] = _mm256_fmadd_ps(gv, wv[c], acc[x][c]);
        }
      }
    }
  }
  for (int x = 0; x < X; ++x) {
    float* d = d_row + std::int64_t{ix0 + x} * cin + ci0;
    for (int c = 0; c < NC; ++c) d[c] = avx2::sum_lanes(acc[x][c]);
  }
}

template <int X>
void backward_channels(const BackwardGeometry& g, const float* grad_image, int iy, int ix0,
                       float* d_row) {
  const int cin = g.p->in_c;
  int ci0 = 0;
  for (; ci0 + 3 <= cin; ci0 += 3) backward_tile<X, 3>(g, grad_image, iy, ix0, ci0, d_row);
  if (cin - ci0 == 2) backward_tile<X, 2>(g, grad_image, iy, ix0, ci0, d_row);
  if (cin - ci0 == 1) backward_tile<X, 1>(g, grad_image, iy, ix0, ci0, d_row);
}

}  // namespace

void conv2d_backward_input_avx2(const LayerParams& p, int n, const float* d_out, const float* w,
                                float* d_in) {
  if (gather::applies(p)) {
    gather::backward<avx2::Lanes256>(p, n, d_out, w, d_in);  // layer 0: lanes along the run
    return;
  }
  const float* packed = pack_weights(p, w);
  const int cp = round_up(p.out_c, kLanes), blocks = cp / kLanes;
  const BackwardGeometry g{&p, packed, cp, blocks, lane_mask(p.out_c - (blocks - 1) * kLanes)};
  // Input columns whose every tap lands inside the output (stride 1 only): there, four pixels
  // go at once.
  const bool tiles = p.stride_w == 1;
  const int first_inner = p.k_w - 1 - p.pad_left;   // smallest ix with ox >= 0 for all kx
  const int last_inner = p.out_w - 1 - p.pad_left;  // largest ix with ox < out_w for all kx
  constexpr int kTile = 4;
  const int rows = n * p.in_h;
  for_each_row(rows, worth_threads(p, n), [&](int r) {
    const int b = r / p.in_h, iy = r % p.in_h;
    const float* grad_image = d_out + std::int64_t{b} * p.out_size();
    float* d_row = d_in + std::int64_t{r} * p.in_w * p.in_c;
    int ix = 0;
    while (ix < p.in_w) {
      if (tiles && ix >= first_inner && ix + kTile - 1 <= last_inner && ix + kTile <= p.in_w) {
        backward_channels<kTile>(g, grad_image, iy, ix, d_row);
        ix += kTile;
      } else {
        backward_channels<1>(g, grad_image, iy, ix, d_row);
        ix += 1;
      }
    }
  });
}

}  // namespace stimloop::cpu
