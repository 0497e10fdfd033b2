// Depthwise k x k convolution with AVX2 + FMA, forward and backward to the input. Channels-last:
// a pixel's channels are contiguous, as are a tap's weights, so one pixel's channels are held in
// up to eight 8-lane accumulators (64 channels a pass) while the taps stream through. The last
// block of a channel count that is not a multiple of 8 is read and written with masks. Compiled
// with -mavx2 -mfma, called only when use_avx2(); the plain loops in depthwise.cpp stay the
// reference. Each output element's sum keeps the taps' order, one FMA per tap.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/avx2_lanes.h"
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
                  Source source, float* dst) {
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
void pixel_all_channels(int k_h, int k_w, const float* w, int c, const float* init, Source source,
                        float* dst) {
  for (int c0 = 0; c0 < c; c0 += kMaxBlocks * kLanes) {
    const int channels = std::min(kMaxBlocks * kLanes, c - c0);
    const int blocks = (channels + kLanes - 1) / kLanes;
    const int last = channels - (blocks - 1) * kLanes;
    switch (blocks) {
      case 1:
        pixel_blocks<1>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
      case 2:
        pixel_blocks<2>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
      case 3:
        pixel_blocks<3>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
      case 4:
        pixel_blocks<4>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
      case 5:
        pixel_blocks<5>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
      case 6:
        pixel_blocks<6>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
      case 7:
        pixel_blocks<7>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
      default:
        pixel_blocks<8>(k_h, k_w, w, c, c0, last, init, source, dst);
        break;
    }
  }
}

}  // namespace

void depthwise_forward_avx2(const LayerParams& p, int n, const float* in, const float* w,
                            const float* bias, float* out) {
  const int rows = n * p.out_h;
  const int c = p.in_c;
#pragma omp parallel for schedule(dynamic, 1) if (worth_threads(p, n))
  for (int r = 0; r < rows; ++r) {
    const int b = r / p.out_h, oy = r % p.out_h;
    const float* image = in + std::int64_t{b} * p.in_size();
    float* out_row = out + std::int64_t{r} * p.out_w * c;
    for (int ox = 0; ox < p.out_w; ++ox) {
      auto source = [&](int ky, int kx) -> const float* {
        const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
        const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
        if (iy < 0 || ix < 0) return nullptr;
        return image + (std::int64_t{iy} * p.in_w + ix) * c;
      };
      pixel_all_channels(p.k_h, p.k_w, w, c, bias, source, out_row + std::int64_t{ox} * c);
    }
  }
}

void depthwise_backward_input_avx2(const LayerParams& p, int n, const float* d_out, const float* w,
                                   float* d_in) {
  const int rows = n * p.in_h;
  const int c = p.in_c;
#pragma omp parallel for schedule(dynamic, 1) if (worth_threads(p, n))
  for (int r = 0; r < rows; ++r) {
    const int b = r / p.in_h, iy = r % p.in_h;
    const float* grad_image = d_out + std::int64_t{b} * p.out_size();
    float* d_row = d_in + std::int64_t{r} * p.in_w * c;
    // The output row and column each tap reads, worked out once per row and once per pixel
    // rather than once per tap (output_of_tap divides by the stride).
    int oy_of[kMaxTaps], ox_of[kMaxTaps];
    for (int ky = 0; ky < p.k_h; ++ky) {
      oy_of[ky] = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
    }
    for (int ix = 0; ix < p.in_w; ++ix) {
      for (int kx = 0; kx < p.k_w; ++kx) {
        ox_of[kx] = output_of_tap(ix, kx, p.stride_w, p.pad_left, p.out_w);
      }
      auto source = [&](int ky, int kx) -> const float* {
        if (oy_of[ky] < 0 || ox_of[kx] < 0) return nullptr;
        return grad_image + (std::int64_t{oy_of[ky]} * p.out_w + ox_of[kx]) * c;
      };
      pixel_all_channels(p.k_h, p.k_w, w, c, nullptr, source, d_row + std::int64_t{ix} * c);
    }
  }
}

}  // namespace stimloop::cpu
