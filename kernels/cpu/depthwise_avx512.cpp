// Depthwise k x k convolution with AVX-512F, forward and backward to the input. Compiled with
// -mavx512f, called only when use_avx512(); the plain loops in depthwise.cpp stay the reference.
//
// Every separable layer of the compact models goes through the row tiles shared with the AVX2
// kernels (depthwise_row_tiles.h).
//
// Other shapes (the shared models' 28x28 readout): per pixel, as depthwise_avx2.cpp with 16-lane
// blocks. Both give results identical to the AVX2 kernels.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/depthwise_row_tiles.h"
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

}  // namespace

void depthwise_forward_avx512(const LayerParams& p, int n, const float* in, const float* w,
                              const float* bias, float* out) {
  if (depthwise_rows::forward<avx512::Lanes512>(p, n, in, w, bias, out)) return;
  depthwise_forward_rows(p, n, in, out, [&](auto source, float* dst) {
    pixel_all_channels(p.k_h, p.k_w, w, p.in_c, bias, nullptr, source, dst);
  });
}

void depthwise_backward_input_avx512(const LayerParams& p, int n, const float* d_out,
                                     const float* w, float* d_in, const float* in_relu) {
  if (depthwise_rows::backward<avx512::Lanes512>(p, n, d_out, w, d_in, in_relu)) return;
  depthwise_backward_rows(p, n, d_out, d_in, in_relu,
                          [&](auto source, const float* keep, float* dst) {
                            pixel_all_channels(p.k_h, p.k_w, w, p.in_c, nullptr, keep, source, dst);
                          });
}

}  // namespace stimloop::cpu
