// Grouped launches: one kernel launch runs the same op for many (model, image batch) tasks whose
// shapes differ (every published compact model has its own filter counts), grouped-GEMM style.
// Each task gets a contiguous range of blocks; a block finds its task by binary search over the
// tasks' first blocks and copies the task into shared memory. A single-layer call is a group of
// one task carried in the kernel's parameters, so one kernel serves both.
//
// Only .cu files include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/op_task.h"
#include "kernels/element_ops.h"

namespace stimloop::cuda {

// Declares `OpTask& name` in shared memory (raw storage: LayerParams' member initialisers would
// make a __shared__ OpTask a dynamically initialised variable, which CUDA forbids).
#define STIMLOOP_SHARED_TASK(name)                                                         \
  __shared__ __align__(16) unsigned char name##_storage[sizeof(::stimloop::cuda::OpTask)]; \
  ::stimloop::cuda::OpTask& name = *reinterpret_cast<::stimloop::cuda::OpTask*>(name##_storage)

// Which task block blockIdx.x belongs to, loaded into shared memory for the whole block; returns
// the block's index within its task.
__device__ inline std::int64_t load_task(const TaskList& list, OpTask& task) {
  __shared__ std::int64_t block_in_task;
  if (threadIdx.x == 0) {
    if (list.count == 0) {
      task = list.single;
    } else {
      int lo = 0, hi = list.count - 1;  // the last task whose first_block <= blockIdx.x
      while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (list.tasks[mid].first_block <= static_cast<std::int64_t>(blockIdx.x)) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      task = list.tasks[lo];
    }
    block_in_task = static_cast<std::int64_t>(blockIdx.x) - task.first_block;
  }
  __syncthreads();
  return block_in_task;
}

// Position of flat index i in an (n, h, w, c) channels-last tensor (32-bit index math whenever
// i fits: a 64-bit division is a long instruction sequence, and index math dominated the cheap
// kernels).
using NhwcIndex = element_ops::NhwcPos;
__device__ inline NhwcIndex unravel_nhwc(std::int64_t i, int h, int w, int c) {
  return element_ops::unravel(i, h, w, c);
}

}  // namespace stimloop::cuda
