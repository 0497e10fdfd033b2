// CUDA launchers of the three ops, forward and backward-to-input, on device pointers (channels-
// last float32). Every kernel has a CPU counterpart in kernels/cpu/ops.h and a comparison test in
// tests/gpu/. Two ways in:
//   - layer_forward / layer_backward_input: one layer of one model, launched now;
//   - GroupedOp: the same layer position of many models (each with its own shapes, weights and
//     buffers) as ONE launch, prepared once and launched every synthesis step (grouped.h).
// Backward launches fuse the ReLU mask of the op's own output: pass the forward output as
// `relu_out` (d_pre = d_out where relu_out > 0, else 0) or nullptr when the op has no ReLU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/op_task.h"
#include "kernels/layer_params.h"

namespace stimloop::cuda {

enum class Pass { kForward, kBackward };

Status layer_forward(const LayerParams& p, int n, const float* in, const float* w,
                     const float* bias, float* out, cudaStream_t stream);
Status layer_backward_input(const LayerParams& p, int n, const float* d_out, const float* relu_out,
                            const float* w, float* d_in, cudaStream_t stream);

struct KernelVariant;  // kernel_variant.h

class GroupedOp {
 public:
  // Every task must have the same LayerKind. Picks the kernel (the tiled dense convolution when
  // every task allows it), assigns each task its block range and uploads the table.
  Status prepare(Pass pass, std::vector<OpTask> tasks, cudaStream_t stream);
  Status launch(cudaStream_t stream) const;
  const char* kernel_name() const;
  bool empty() const { return count_ == 0; }

 private:
  const KernelVariant* variant_ = nullptr;
  DeviceBuffer<OpTask> table_;
  OpTask single_{};  // a group of one travels in the launch's parameters (no table read)
  int count_ = 0;
  std::int64_t total_blocks_ = 0;
};

}  // namespace stimloop::cuda
