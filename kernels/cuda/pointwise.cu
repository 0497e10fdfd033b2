// Pointwise (1x1) convolution = per-pixel matmul: the channel-mixing half of separable layers,
// the shared models' 100 -> 219 mixing stage, and Flatten + Dense (one pixel, in_c = h*w*c).
//   - GEMM kernels (the default): out[pixels x out_c] = in[pixels x in_c] * W, and for the
//     backward pass d_in = (d_out masked by the ReLU) * W^T, as 64 x 64 register-tiled blocks
//     (each thread 4 x 4 outputs, 16-deep slices of both operands staged in shared memory).
//   - Long forward reductions (the Dense readout, 2352 inputs): one block per output value with
//     a fixed reduction tree, fast and deterministic.
//   - Straightforward kernels (one thread per output value), kept as the reference the tests and
//     STIMLOOP_CUDA_KERNELS=plain select.
// Grouped: one launch serves many models (grouped.h).
#include "kernels/cuda/kernel_variant.h"

namespace stimloop::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

__host__ __device__ inline std::int64_t pixels(const OpTask& t) {
  return std::int64_t{t.n} * t.p.out_h * t.p.out_w;
}
std::int64_t forward_block_blocks(const OpTask& t) { return pixels(t) * t.p.out_c; }

// The straightforward kernels' arithmetic is kernels/element_ops.h (checked against the CPU
// reference in tests/unit/test_element_ops.cpp).
__global__ void __launch_bounds__(kThreads) pointwise_forward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= pixels(t) * p.out_c) return;
  const float sum = element_ops::forward_sum(p, t.in, t.w, i, element_ops::bias_of(p, t.bias, i));
  t.out[i] = element_ops::activate(p, sum);
}

// One block per output value: each thread a strided partial sum, then a fixed tree (warp
// shuffles, then the warps' sums in order): deterministic. One warp per value left a batch-1
// readout latency-bound (74 dependent steps for 2352 inputs).
__global__ void __launch_bounds__(kThreads) pointwise_forward_block_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  __shared__ float warp_sums[kThreads / kWarp];
  const std::int64_t i = load_task(tasks, t);  // one block per output value
  const LayerParams& p = t.p;
  const int co = static_cast<int>(i % p.out_c);
  const float* a = t.in + (i / p.out_c) * p.in_c;
  float acc = 0.0f;
  for (int ci = threadIdx.x; ci < p.in_c; ci += kThreads) {
    acc = fmaf(a[ci], t.w[std::int64_t{ci} * p.out_c + co], acc);
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    acc += __shfl_down_sync(0xffffffffu, acc, offset);
  }
  if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / kWarp; ++w) total += warp_sums[w];
    total += t.bias != nullptr ? t.bias[co] : 0.0f;
    t.out[i] = p.relu ? fmaxf(total, 0.0f) : total;
  }
}

__global__ void __launch_bounds__(kThreads) pointwise_backward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= pixels(t) * t.p.in_c) return;
  t.out[i] = element_ops::backward_sum(t.p, t.in, t.aux, t.w, i);
}

// ---- register-tiled GEMM
constexpr int kTileM = 64, kTileN = 64, kTileK = 16;
constexpr int kGemmThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each

// The pass as C[M x N] = A[M x K] * B[K x N] on the task's buffers.
struct GemmView {
  std::int64_t m;
  int n, k;
  const float* a;
  const float* a_mask;  // backward: the ReLU mask over A (A's layout), else nullptr
  const float* b;
  int b_k_stride, b_n_stride;
  const float* bias;
  bool relu;
  float* c;
};

__host__ __device__ inline GemmView forward_view(const OpTask& t) {
  return {pixels(t), t.p.out_c, t.p.in_c, t.in,     nullptr, t.w,
          t.p.out_c, 1,         t.bias,   t.p.relu, t.out};
}
__host__ __device__ inline GemmView backward_view(const OpTask& t) {
  return {pixels(t), t.p.in_c, t.p.out_c, t.in, t.aux, t.w, 1, t.p.out_c, nullptr, false, t.out};
}

template <bool kBackward>
std::int64_t gemm_blocks(const OpTask& t) {
  const GemmView v = kBackward ? backward_view(t) : forward_view(t);
  return ((v.m + kTileM - 1) / kTileM) * ((v.n + kTileN - 1) / kTileN);
}

template <bool kBackward>
__global__ void __launch_bounds__(kGemmThreads) pointwise_gemm_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  __shared__ __align__(16) float a_s[kTileK][kTileM + 4];
  __shared__ __align__(16) float b_s[kTileK][kTileN];
  const std::int64_t block = load_task(tasks, t);
  const GemmView v = kBackward ? backward_view(t) : forward_view(t);
  const int n_tiles = (v.n + kTileN - 1) / kTileN;
  const std::int64_t m0 = (block / n_tiles) * kTileM;
  const int n0 = static_cast<int>(block % n_tiles) * kTileN;
  const int tn = threadIdx.x % 16, tm = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < v.k; k0 += kTileK) {
    for (int e = threadIdx.x; e < kTileM * kTileK; e += kGemmThreads) {
      const int kk = e % kTileK, mm = e / kTileK;
      const std::int64_t m = m0 + mm;
      const int k = k0 + kk;
      float a = 0.0f;
      if (m < v.m && k < v.k) {
        const std::int64_t at = m * v.k + k;
        a = v.a_mask != nullptr && v.a_mask[at] <= 0.0f ? 0.0f : v.a[at];
      }
      a_s[kk][mm] = a;
    }
    for (int e = threadIdx.x; e < kTileK * kTileN; e += kGemmThreads) {
      const int nn = e % kTileN, kk = e / kTileN;
      const int n = n0 + nn, k = k0 + kk;
      b_s[kk][nn] = n < v.n && k < v.k
                        ? v.b[std::int64_t{k} * v.b_k_stride + std::int64_t{n} * v.b_n_stride]
                        : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      const float4 a4 = *reinterpret_cast<const float4*>(&a_s[kk][tm * 4]);
      const float4 b4 = *reinterpret_cast<const float4*>(&b_s[kk][tn * 4]);
      const float a[4] = {a4.x, a4.y, a4.z, a4.w}, b[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const std::int64_t m = m0 + tm * 4 + i;
    if (m >= v.m) break;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tn * 4 + j;
      if (n >= v.n) break;
      float y = acc[i][j] + (v.bias != nullptr ? v.bias[n] : 0.0f);
      v.c[m * v.n + n] = v.relu ? fmaxf(y, 0.0f) : y;
    }
  }
}

}  // namespace

const KernelVariant kPointwiseForwardGemm = {
    "pointwise_gemm_kernel<forward>", kGemmThreads, gemm_blocks<false>,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_gemm_kernel<false>, kGemmThreads)};
const KernelVariant kPointwiseBackwardGemm = {
    "pointwise_gemm_kernel<backward>", kGemmThreads, gemm_blocks<true>,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_gemm_kernel<true>, kGemmThreads)};
const KernelVariant kPointwiseForward = {
    "pointwise_forward_kernel", kThreads, blocks_per_output<kThreads>,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_forward_kernel, kThreads)};
const KernelVariant kPointwiseForwardBlock = {
    "pointwise_forward_block_kernel", kThreads, forward_block_blocks,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_forward_block_kernel, kThreads)};
const KernelVariant kPointwiseBackward = {
    "pointwise_backward_kernel", kThreads, blocks_per_input<kThreads>,
    STIMLOOP_VARIANT_LAUNCHER(pointwise_backward_kernel, kThreads)};

}  // namespace stimloop::cuda
