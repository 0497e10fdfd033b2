// Pointwise (1x1) convolution = per-pixel matmul: the channel-mixing half of separable layers,
// the shared models' 100 -> 219 mixing stage, and Flatten + Dense (one pixel, in_c = h*w*c).
// Short reductions: one thread per output value, channel fastest (the warp shares one input
// pixel, a broadcast, and reads consecutive weights). Long reductions (the Dense readout, 2352
// inputs for a compact model): one warp per output value with a fixed shuffle tree, fast and
// deterministic. Grouped: one launch serves many models (grouped.h).
#include "kernels/cuda/kernel_variant.h"

namespace stimloop::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

__host__ __device__ inline std::int64_t pixels(const OpTask& t) { return std::int64_t{t.n} * t.p.out_h * t.p.out_w; }
std::int64_t forward_blocks(const OpTask& t) {
  return (pixels(t) * t.p.out_c + kThreads - 1) / kThreads;
}
std::int64_t forward_warp_blocks(const OpTask& t) {
  return (pixels(t) * t.p.out_c * kWarp + kThreads - 1) / kThreads;
}
std::int64_t backward_blocks(const OpTask& t) {
  return (pixels(t) * t.p.in_c + kThreads - 1) / kThreads;
}

__global__ void __launch_bounds__(kThreads) pointwise_forward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= pixels(t) * p.out_c) return;
  const int co = static_cast<int>(i % p.out_c);
  const float* a = t.in + (i / p.out_c) * p.in_c;
  float acc = t.bias != nullptr ? t.bias[co] : 0.0f;
  for (int ci = 0; ci < p.in_c; ++ci) acc = fmaf(a[ci], t.w[std::int64_t{ci} * p.out_c + co], acc);
  t.out[i] = p.relu ? fmaxf(acc, 0.0f) : acc;
}

__global__ void __launch_bounds__(kThreads) pointwise_forward_warp_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = (block * kThreads + threadIdx.x) / kWarp;
  if (i >= pixels(t) * p.out_c) return;  // whole warps leave together
  const int lane = threadIdx.x % kWarp;
  const int co = static_cast<int>(i % p.out_c);
  const float* a = t.in + (i / p.out_c) * p.in_c;
  float acc = 0.0f;
  for (int ci = lane; ci < p.in_c; ci += kWarp) {
    acc = fmaf(a[ci], t.w[std::int64_t{ci} * p.out_c + co], acc);
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    acc += __shfl_down_sync(0xffffffffu, acc, offset);
  }
  if (lane == 0) {
    acc += t.bias != nullptr ? t.bias[co] : 0.0f;
    t.out[i] = p.relu ? fmaxf(acc, 0.0f) : acc;
  }
}

__global__ void __launch_bounds__(kThreads) pointwise_backward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= pixels(t) * p.in_c) return;
  const int ci = static_cast<int>(i % p.in_c);
  const std::int64_t g = (i / p.in_c) * p.out_c;
  const float* w_row = t.w + std::int64_t{ci} * p.out_c;
  float acc = 0.0f;
  for (int co = 0; co < p.out_c; ++co) {
    if (t.aux != nullptr && t.aux[g + co] <= 0.0f) continue;
    acc = fmaf(t.in[g + co], w_row[co], acc);
  }
  t.out[i] = acc;
}

}  // namespace

const KernelVariant kPointwiseForward = {
    "pointwise_forward_kernel", kThreads, forward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_forward_kernel, kThreads)};
const KernelVariant kPointwiseForwardWarp = {
    "pointwise_forward_warp_kernel", kThreads, forward_warp_blocks,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_forward_warp_kernel, kThreads)};
const KernelVariant kPointwiseBackward = {
    "pointwise_backward_kernel", kThreads, backward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_backward_kernel, kThreads)};

}  // namespace stimloop::cuda
