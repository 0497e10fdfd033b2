// CUDA launchers of the three ops, forward and backward-to-input, on device pointers (channels-
// last float32, batch n). Each takes an explicit stream, returns early on empty work and checks
// the launch. The kernels live in conv2d.cu, depthwise.cu, pointwise.cu; every one has a CPU
// counterpart in kernels/cpu/ops.h and a comparison test in tests/gpu/.
//
// Backward launchers fuse the ReLU mask of the op's own output: pass the forward output as
// `relu_out` (d_pre = d_out where relu_out > 0, else 0) or nullptr when the op has no ReLU.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/layer_params.h"

namespace stimloop::cuda {

Status conv2d_forward(const LayerParams& p, int n, const float* in, const float* w,
                      const float* bias, float* out, cudaStream_t stream);
Status conv2d_backward_input(const LayerParams& p, int n, const float* d_out, const float* relu_out,
                             const float* w, float* d_in, cudaStream_t stream);

Status depthwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                         const float* bias, float* out, cudaStream_t stream);
Status depthwise_backward_input(const LayerParams& p, int n, const float* d_out,
                                const float* relu_out, const float* w, float* d_in,
                                cudaStream_t stream);

Status pointwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                         const float* bias, float* out, cudaStream_t stream);
Status pointwise_backward_input(const LayerParams& p, int n, const float* d_out,
                                const float* relu_out, const float* w, float* d_in,
                                cudaStream_t stream);

// Dispatch on p.kind.
Status layer_forward(const LayerParams& p, int n, const float* in, const float* w,
                     const float* bias, float* out, cudaStream_t stream);
Status layer_backward_input(const LayerParams& p, int n, const float* d_out, const float* relu_out,
                            const float* w, float* d_in, cudaStream_t stream);

}  // namespace stimloop::cuda
