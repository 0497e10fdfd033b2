// How dispatch.cu sees a kernel: its name (for errors), its block size, how many blocks one task
// needs, and a launcher. Each op file (conv2d.cu, depthwise.cu, pointwise.cu) defines its
// variants; dispatch.cu picks one per grouped launch. Only .cu files include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/grouped.h"

namespace stimloop::cuda {

struct KernelVariant {
  const char* name;
  int threads;
  std::int64_t (*blocks)(const OpTask& task);
  void (*launch)(unsigned int grid, cudaStream_t stream, const TaskList& tasks);
};

// Blocks for one thread per output (per input) element of a task's n images: the
// straightforward kernels' layout.
template <int kThreads>
std::int64_t blocks_per_output(const OpTask& t) {
  return (std::int64_t{t.n} * t.p.out_size() + kThreads - 1) / kThreads;
}
template <int kThreads>
std::int64_t blocks_per_input(const OpTask& t) {
  return (std::int64_t{t.n} * t.p.in_size() + kThreads - 1) / kThreads;
}

// Defines the launcher of a __global__ kernel(TaskList) with THREADS threads per block.
#define STIMLOOP_VARIANT_LAUNCHER(kernel, threads)                    \
  [](unsigned int grid, cudaStream_t stream, const TaskList& tasks) { \
    kernel<<<grid, threads, 0, stream>>>(tasks);                      \
  }

// Dense convolution: the straightforward kernels (any shape) and the tiled ones (stride 1, three
// input channels, 3x3 or 5x5: layer 0 of every published model).
extern const KernelVariant kConv2dForward, kConv2dBackward;
extern const KernelVariant kConv2dForwardTiled3, kConv2dForwardTiled5;
extern const KernelVariant kConv2dBackwardTiled3, kConv2dBackwardTiled5;
extern const KernelVariant kDepthwiseForward, kDepthwiseBackward;
// Depthwise tiled forward (k <= 5, stride <= 2: every separable layer; not the 28x28 readout).
extern const KernelVariant kDepthwiseForwardTiled;
// Depthwise backward, any shape, with specialised tap loops for square 3x3 and 5x5 at strides 1
// and 2 (only the taps of the input's parity class).
extern const KernelVariant kDepthwiseBackwardGather;
// Depthwise backward at stride 2 (square 3x3 or 5x5): a 2 x 2 block of inputs per thread.
extern const KernelVariant kDepthwiseBackwardQuad;
bool depthwise_backward_quad_shape(const LayerParams& p);
// Pointwise: register-tiled GEMM, one thread per output, or one block per output for long
// reductions (the Dense readout).
extern const KernelVariant kPointwiseForward, kPointwiseForwardBlock, kPointwiseBackward;
extern const KernelVariant kPointwiseForwardGemm, kPointwiseBackwardGemm;

}  // namespace stimloop::cuda
