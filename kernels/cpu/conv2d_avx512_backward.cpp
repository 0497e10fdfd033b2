// Backward to the input of the dense convolution with AVX-512F (see conv2d_avx512.cpp for the
// forward). Compiled with -mavx512f -mfma, called only when use_avx512().
//
// With stride 1, d_in[iy,ix,ci] = sum over (ky, kx, co) of d_out[iy+pad-ky, ix+pad-kx, co] *
// w[ky,kx,ci,co]: a forward convolution of d_out with the kernel flipped and its channel axes
// swapped. Two ways to run it, by the number of input channels:
//  - many (pointwise layers): exactly that forward convolution (conv_forward_packed), vectorised
//    over the input channels;
//  - at most 4 (layer 0: RGB): 16 lanes over input channels would stay mostly empty, so the
//    lanes run along the reduction instead (conv_gather_backward.h, shared with the AVX2 path).
// Other strides, and a Dense layer (1x1 image, where repacking its large weight matrix would
// cost more than the product), go to the AVX2 kernel.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/conv2d_avx512.h"
#include "kernels/cpu/conv_gather_backward.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"

namespace stimloop::cpu {
namespace {

// Below this many input pixels per call the flipped weights are not worth repacking.
constexpr std::int64_t kMinPixelsForFlip = 64;

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

}  // namespace

void conv2d_backward_input_avx512(const LayerParams& p, int n, const float* d_out, const float* w,
                                  float* d_in) {
  const bool unit_stride = p.stride_h == 1 && p.stride_w == 1;
  if (gather::applies(p)) {
    gather::backward<avx512::Lanes512>(p, n, d_out, w, d_in);
  } else if (unit_stride && p.k_h <= kMaxTaps &&
             std::int64_t{n} * p.in_h * p.in_w >= kMinPixelsForFlip) {
    backward_as_forward(p, n, d_out, w, d_in);
  } else {
    conv2d_backward_input_avx2(p, n, d_out, w, d_in);
  }
}

}  // namespace stimloop::cpu
