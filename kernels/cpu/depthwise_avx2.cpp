// Depthwise k x k convolution with AVX2 + FMA, forward and backward to the input. The shapes of
// the compact models' separable layers go through the row tiles (depthwise_row_tiles.h); the
// others (the shared models' 28x28 readout) per pixel: a pixel's channels are contiguous, as are
// a tap's weights, so one pixel's channels are held in up to eight 8-lane accumulators (64
// channels a pass) while the taps stream through. The last
// block of a channel count that is not a multiple of 8 is read and written with masks. Compiled
// with -mavx2 -mfma, called only when use_avx2(); the plain loops in depthwise.cpp stay the
// reference. Each output element's sum keeps the taps' order, one FMA per tap. The backward pass
// can apply the ReLU mask of the layer below as it stores (in_relu), which saves the caller a
// separate pass over the gradient (an eighth of a synthesis step on layer 0's output).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/avx2_lanes.h"
#include "kernels/cpu/depthwise_row_tiles.h"
#include "kernels/cpu/depthwise_rows.h"
#include "kernels/cpu/ops.h"

namespace stimloop::cpu {
namespace {

using avx2::kLanes;
using avx2::lane_mask;
constexpr int kMaxBlocks = 8;

// Channels c0 .. c0 + 8 * NB - 1 (the last block possibly partial: `last` valid lanes) of one
// pixel: acc = init + sum over the taps that `source(ky, kx)` maps to data (or null: no tap).
template <int NB, typename Source>
void pixel_blocks(int k_h, int k_w, const float* w, int c, int c0, int last, const float* init,
                  const float* keep, Source source, float* dst) {
  const __m256i tail = lane_mask(last);
  auto load = [&](const float* at, int j) {
    return j + 1 < NB || last == kLanes ? _mm256_loadu_ps(at) : _mm256_maskload_ps(at, tail);
  };
  __m256 acc[NB];
  for (int j = 0; j < NB; ++j) {
    acc[j] = init == nullptr ? _mm256_setzero_ps() : load(init + c0 + j * kLanes, j);
  }
  for (int ky = 0; ky < k_h; ++ky) {
    for (int kx = 0; kx < k_w; ++kx) {
      const float* x = source(ky, kx);
      if (x == nullptr) continue;
      const float* w_tap = w + (std::int64_t{ky} * k_w + kx) * c + c0;
      for (int j = 0; j < NB; ++j) {
        acc[j] = _mm256_fmadd_ps(load(x + c0 + j * kLanes, j), load(w_tap + j * kLanes, j), acc[j]);
      }
    }
  }
  if (keep != nullptr) {  // zero where keep <= 0 (NaN keeps, as the scalar `keep <= 0 ? 0 : d`)
    for (int j = 0; j < NB; ++j) {
      const __m256 on =
          _mm256_cmp_ps(load(keep + c0 + j * kLanes, j), _mm256_setzero_ps(), _CMP_NLE_UQ);
      acc[j] = _mm256_and_ps(acc[j], on);
    }
  }
  for (int j = 0; j < NB; ++j) {
    float* at = dst + c0 + j * kLanes;
    if (j + 1 < NB || last == kLanes) {
      _mm256_storeu_ps(at, acc[j]);
    } else {
      _mm256_maskstore_ps(at, tail, acc[j]);
    }
  }
}

// Runs pixel_blocks over all channels of one pixel, in passes of up to kMaxBlocks blocks.
template <typename Source>
void pixel_all_channels(int k_h, int k_w, const float* w, int c, const float* init,
                        const float* keep, Source source, float* dst) {
  for (int c0 = 0; c0 < c; c0 += kMaxBlocks * kLanes) {
    const int channels = std::min(kMaxBlocks * kLanes, c - c0);
    const int blocks = (channels + kLanes - 1) / kLanes;
    const int last = channels - (blocks - 1) * kLanes;
    with_block_count(blocks, [&](auto nb) {
      pixel_blocks<decltype(nb)::value>(k_h, k_w, w, c, c0, last, init, keep, source, dst);
    });
  }
}

}  // namespace

void depthwise_forward_avx2(const LayerParams& p, int n, const float* in, const float* w,
                            const float* bias, float* out) {
  if (depthwise_rows::forward<avx2::Lanes256>(p, n, in, w, bias, out)) return;
  depthwise_forward_rows(p, n, in, out, [&](auto source, float* dst) {
    pixel_all_channels(p.k_h, p.k_w, w, p.in_c, bias, nullptr, source, dst);
  });
}

void depthwise_backward_input_avx2(const LayerParams& p, int n, const float* d_out, const float* w,
                                   float* d_in, const float* in_relu) {
  if (depthwise_rows::backward<avx2::Lanes256>(p, n, d_out, w, d_in, in_relu)) {
    return;
  }
  depthwise_backward_rows(p, n, d_out, d_in, in_relu,
                          [&](auto source, const float* keep, float* dst) {
                            pixel_all_channels(p.k_h, p.k_w, w, p.in_c, nullptr, keep, source, dst);
                          });
}

}  // namespace stimloop::cpu
