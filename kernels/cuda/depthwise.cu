// Depthwise k x k convolution: the spatial half of every separable layer (5x5, strides 1 and 2)
// and the shared models' 28x28 'valid' spatial readout (one output pixel per channel). One thread
// per output value in forward, one per input value in backward (gather, no atomics), channel
// fastest so neighbouring threads read neighbouring addresses.
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ops.h"

namespace stimloop::cuda {
namespace {

__global__ void depthwise_forward_kernel(LayerParams p, int n, const float* __restrict__ in,
                                         const float* __restrict__ w,
                                         const float* __restrict__ bias, float* __restrict__ out) {
  const int c = p.in_c;
  const std::int64_t total = std::int64_t{n} * p.out_h * p.out_w * c;
  STIMLOOP_GRID_LOOP(i, total) {
    const auto [b, oy, ox, ch] = unravel_nhwc(i, p.out_h, p.out_w, c);
    const float* image = in + std::int64_t{b} * p.in_h * p.in_w * c + ch;
    float acc = bias != nullptr ? bias[ch] : 0.0f;
    for (int ky = 0; ky < p.k_h; ++ky) {
      const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
      if (iy < 0) continue;
      for (int kx = 0; kx < p.k_w; ++kx) {
        const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
        if (ix < 0) continue;
        acc = fmaf(image[(std::int64_t{iy} * p.in_w + ix) * c],
                   w[(std::int64_t{ky} * p.k_w + kx) * c + ch], acc);
      }
    }
    out[i] = p.relu ? fmaxf(acc, 0.0f) : acc;
  }
}

__global__ void depthwise_backward_input_kernel(LayerParams p, int n,
                                                const float* __restrict__ d_out,
                                                const float* __restrict__ relu_out,
                                                const float* __restrict__ w,
                                                float* __restrict__ d_in) {
  const int c = p.in_c;
  const std::int64_t total = std::int64_t{n} * p.in_h * p.in_w * c;
  STIMLOOP_GRID_LOOP(i, total) {
    const auto [b, iy, ix, ch] = unravel_nhwc(i, p.in_h, p.in_w, c);
    const std::int64_t image_offset = std::int64_t{b} * p.out_h * p.out_w * c + ch;
    float acc = 0.0f;
    for (int ky = 0; ky < p.k_h; ++ky) {
      const int oy = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
      if (oy < 0) continue;
      for (int kx = 0; kx < p.k_w; ++kx) {
        const int ox = output_of_tap(ix, kx, p.stride_w, p.pad_left, p.out_w);
        if (ox < 0) continue;
        const std::int64_t g = image_offset + (std::int64_t{oy} * p.out_w + ox) * c;
        if (relu_out != nullptr && relu_out[g] <= 0.0f) continue;
        acc = fmaf(d_out[g], w[(std::int64_t{ky} * p.k_w + kx) * c + ch], acc);
      }
    }
    d_in[i] = acc;
  }
}

}  // namespace

Status depthwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                         const float* bias, float* out, cudaStream_t stream) {
  return launch_1d("depthwise_forward_kernel", std::int64_t{n} * p.out_size(), 1, stream,
                   depthwise_forward_kernel, p, n, in, w, bias, out);
}

Status depthwise_backward_input(const LayerParams& p, int n, const float* d_out,
                                const float* relu_out, const float* w, float* d_in,
                                cudaStream_t stream) {
  return launch_1d("depthwise_backward_input_kernel", std::int64_t{n} * p.in_size(), 1, stream,
                   depthwise_backward_input_kernel, p, n, d_out, relu_out, w, d_in);
}

}  // namespace stimloop::cuda
