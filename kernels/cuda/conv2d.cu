// Dense k x k convolution (layer 0 of every model: 5x5, 3 -> F channels at 112x112, the bulk of
// the arithmetic). Forward: one thread per output value, co fastest so a warp reads one input
// pixel (broadcast) and 32 consecutive weights (coalesced). Backward to the input: one thread per
// input value, gathering over the taps that touched it -- no atomics, so results are
// deterministic run to run. These are the straightforward kernels; the tiled, fused versions of
// the CUDA backend issue are checked against them and against the CPU.
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ops.h"

namespace stimloop::cuda {
namespace {

__global__ void conv2d_forward_kernel(LayerParams p, int n, const float* __restrict__ in,
                                      const float* __restrict__ w, const float* __restrict__ bias,
                                      float* __restrict__ out) {
  const std::int64_t total = std::int64_t{n} * p.out_h * p.out_w * p.out_c;
  STIMLOOP_GRID_LOOP(i, total) {
    const auto [b, oy, ox, co] = unravel_nhwc(i, p.out_h, p.out_w, p.out_c);
    const float* image = in + std::int64_t{b} * p.in_h * p.in_w * p.in_c;
    float acc = bias != nullptr ? bias[co] : 0.0f;
    for (int ky = 0; ky < p.k_h; ++ky) {
      const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
      if (iy < 0) continue;
      for (int kx = 0; kx < p.k_w; ++kx) {
        const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
        if (ix < 0) continue;
        const float* pixel = image + (std::int64_t{iy} * p.in_w + ix) * p.in_c;
        const float* w_tap = w + (std::int64_t{ky} * p.k_w + kx) * p.in_c * p.out_c + co;
        for (int ci = 0; ci < p.in_c; ++ci) acc = fmaf(pixel[ci], w_tap[ci * p.out_c], acc);
      }
    }
    out[i] = p.relu ? fmaxf(acc, 0.0f) : acc;
  }
}

__global__ void conv2d_backward_input_kernel(LayerParams p, int n, const float* __restrict__ d_out,
                                             const float* __restrict__ relu_out,
                                             const float* __restrict__ w,
                                             float* __restrict__ d_in) {
  const std::int64_t total = std::int64_t{n} * p.in_h * p.in_w * p.in_c;
  STIMLOOP_GRID_LOOP(i, total) {
    const auto [b, iy, ix, ci] = unravel_nhwc(i, p.in_h, p.in_w, p.in_c);
    const std::int64_t image_offset = std::int64_t{b} * p.out_h * p.out_w * p.out_c;
    float acc = 0.0f;
    for (int ky = 0; ky < p.k_h; ++ky) {
      const int oy = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
      if (oy < 0) continue;
      for (int kx = 0; kx < p.k_w; ++kx) {
        const int ox = output_of_tap(ix, kx, p.stride_w, p.pad_left, p.out_w);
        if (ox < 0) continue;
        const std::int64_t g_offset = image_offset + (std::int64_t{oy} * p.out_w + ox) * p.out_c;
        const float* w_row = w + ((std::int64_t{ky} * p.k_w + kx) * p.in_c + ci) * p.out_c;
        for (int co = 0; co < p.out_c; ++co) {
          float g = d_out[g_offset + co];
          if (relu_out != nullptr && relu_out[g_offset + co] <= 0.0f) g = 0.0f;
          acc = fmaf(g, w_row[co], acc);
        }
      }
    }
    d_in[i] = acc;
  }
}

}  // namespace

Status conv2d_forward(const LayerParams& p, int n, const float* in, const float* w,
                      const float* bias, float* out, cudaStream_t stream) {
  return launch_1d("conv2d_forward_kernel", std::int64_t{n} * p.out_size(), 1, stream,
                   conv2d_forward_kernel, p, n, in, w, bias, out);
}

Status conv2d_backward_input(const LayerParams& p, int n, const float* d_out, const float* relu_out,
                             const float* w, float* d_in, cudaStream_t stream) {
  return launch_1d("conv2d_backward_input_kernel", std::int64_t{n} * p.in_size(), 1, stream,
                   conv2d_backward_input_kernel, p, n, d_out, relu_out, w, d_in);
}

}  // namespace stimloop::cuda
