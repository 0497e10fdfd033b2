// Pointwise (1x1) convolution = per-pixel matmul: the channel-mixing half of separable layers,
// the shared models' 100 -> 219 mixing stage, and Flatten + Dense (one pixel, in_c = h*w*c).
// Short reductions (in_c < 128): one thread per output value. Long reductions (the Dense readout,
// 2352 inputs for a compact model): one warp per output value with a fixed shuffle tree, which is
// both fast and deterministic.
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ops.h"

namespace stimloop::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kLongReduction = 128;

__global__ void pointwise_forward_kernel(LayerParams p, std::int64_t pixels,
                                         const float* __restrict__ in, const float* __restrict__ w,
                                         const float* __restrict__ bias, float* __restrict__ out) {
  const std::int64_t total = pixels * p.out_c;
  STIMLOOP_GRID_LOOP(i, total) {
    const int co = static_cast<int>(i % p.out_c);
    const float* a = in + (i / p.out_c) * p.in_c;
    float acc = bias != nullptr ? bias[co] : 0.0f;
    for (int ci = 0; ci < p.in_c; ++ci) acc = fmaf(a[ci], w[std::int64_t{ci} * p.out_c + co], acc);
    out[i] = p.relu ? fmaxf(acc, 0.0f) : acc;
  }
}

__global__ void pointwise_forward_warp_kernel(LayerParams p, std::int64_t pixels,
                                              const float* __restrict__ in,
                                              const float* __restrict__ w,
                                              const float* __restrict__ bias,
                                              float* __restrict__ out) {
  const std::int64_t total = pixels * p.out_c;
  const int lane = threadIdx.x % kWarp;
  const std::int64_t warps = std::int64_t{gridDim.x} * blockDim.x / kWarp;
  for (std::int64_t i = (blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x) / kWarp; i < total;
       i += warps) {
    const int co = static_cast<int>(i % p.out_c);
    const float* a = in + (i / p.out_c) * p.in_c;
    float acc = 0.0f;
    for (int ci = lane; ci < p.in_c; ci += kWarp) {
      acc = fmaf(a[ci], w[std::int64_t{ci} * p.out_c + co], acc);
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      acc += __shfl_down_sync(0xffffffffu, acc, offset);
    }
    if (lane == 0) {
      acc += bias != nullptr ? bias[co] : 0.0f;
      out[i] = p.relu ? fmaxf(acc, 0.0f) : acc;
    }
  }
}

__global__ void pointwise_backward_input_kernel(LayerParams p, std::int64_t pixels,
                                                const float* __restrict__ d_out,
                                                const float* __restrict__ relu_out,
                                                const float* __restrict__ w,
                                                float* __restrict__ d_in) {
  const std::int64_t total = pixels * p.in_c;
  STIMLOOP_GRID_LOOP(i, total) {
    const int ci = static_cast<int>(i % p.in_c);
    const std::int64_t g = (i / p.in_c) * p.out_c;
    const float* w_row = w + std::int64_t{ci} * p.out_c;
    float acc = 0.0f;
    for (int co = 0; co < p.out_c; ++co) {
      if (relu_out != nullptr && relu_out[g + co] <= 0.0f) continue;
      acc = fmaf(d_out[g + co], w_row[co], acc);
    }
    d_in[i] = acc;
  }
}

}  // namespace

Status pointwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                         const float* bias, float* out, cudaStream_t stream) {
  const std::int64_t pixels = std::int64_t{n} * p.out_h * p.out_w;
  if (p.in_c >= kLongReduction) {
    return launch_1d("pointwise_forward_warp_kernel", pixels * p.out_c, kWarp, stream,
                     pointwise_forward_warp_kernel, p, pixels, in, w, bias, out);
  }
  return launch_1d("pointwise_forward_kernel", pixels * p.out_c, 1, stream,
                   pointwise_forward_kernel, p, pixels, in, w, bias, out);
}

Status pointwise_backward_input(const LayerParams& p, int n, const float* d_out,
                                const float* relu_out, const float* w, float* d_in,
                                cudaStream_t stream) {
  const std::int64_t pixels = std::int64_t{n} * p.out_h * p.out_w;
  return launch_1d("pointwise_backward_input_kernel", pixels * p.in_c, 1, stream,
                   pointwise_backward_input_kernel, p, pixels, d_out, relu_out, w, d_in);
}

}  // namespace stimloop::cuda
