// Depthwise k x k convolution: the spatial half of every separable layer (5x5, strides 1 and 2)
// and the shared models' 28x28 'valid' spatial readout (one output pixel per channel). One thread
// per output value in forward, one per input value in backward (gather, no atomics), channel
// fastest so neighbouring threads read neighbouring addresses. Grouped: one launch serves many
// models (grouped.h).
#include "kernels/cuda/kernel_variant.h"

namespace stimloop::cuda {
namespace {

constexpr int kThreads = 256;

std::int64_t forward_blocks(const OpTask& t) {
  return (std::int64_t{t.n} * t.p.out_size() + kThreads - 1) / kThreads;
}
std::int64_t backward_blocks(const OpTask& t) {
  return (std::int64_t{t.n} * t.p.in_size() + kThreads - 1) / kThreads;
}

__global__ void __launch_bounds__(kThreads) depthwise_forward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= std::int64_t{t.n} * p.out_size()) return;
  const int c = p.in_c;
  const int ch = static_cast<int>(i % c);
  std::int64_t rest = i / c;
  const int ox = static_cast<int>(rest % p.out_w);
  rest /= p.out_w;
  const int oy = static_cast<int>(rest % p.out_h);
  const float* image = t.in + (rest / p.out_h) * p.in_size() + ch;
  float acc = t.bias != nullptr ? t.bias[ch] : 0.0f;
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
    if (iy < 0) continue;
    for (int kx = 0; kx < p.k_w; ++kx) {
      const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
      if (ix < 0) continue;
      acc = fmaf(image[(std::int64_t{iy} * p.in_w + ix) * c],
                 t.w[(std::int64_t{ky} * p.k_w + kx) * c + ch], acc);
    }
  }
  t.out[i] = p.relu ? fmaxf(acc, 0.0f) : acc;
}

__global__ void __launch_bounds__(kThreads) depthwise_backward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= std::int64_t{t.n} * p.in_size()) return;
  const int c = p.in_c;
  const int ch = static_cast<int>(i % c);
  std::int64_t rest = i / c;
  const int ix = static_cast<int>(rest % p.in_w);
  rest /= p.in_w;
  const int iy = static_cast<int>(rest % p.in_h);
  const std::int64_t image_offset = (rest / p.in_h) * p.out_size() + ch;
  float acc = 0.0f;
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int oy = output_of_tap(iy, ky, p.stride_h, p.pad_top, p.out_h);
    if (oy < 0) continue;
    for (int kx = 0; kx < p.k_w; ++kx) {
      const int ox = output_of_tap(ix, kx, p.stride_w, p.pad_left, p.out_w);
      if (ox < 0) continue;
      const std::int64_t g = image_offset + (std::int64_t{oy} * p.out_w + ox) * c;
      if (t.aux != nullptr && t.aux[g] <= 0.0f) continue;
      acc = fmaf(t.in[g], t.w[(std::int64_t{ky} * p.k_w + kx) * c + ch], acc);
    }
  }
  t.out[i] = acc;
}

}  // namespace

const KernelVariant kDepthwiseForward = {
    "depthwise_forward_kernel", kThreads, forward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(depthwise_forward_kernel, kThreads)};
const KernelVariant kDepthwiseBackward = {
    "depthwise_backward_kernel", kThreads, backward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(depthwise_backward_kernel, kThreads)};

}  // namespace stimloop::cuda
