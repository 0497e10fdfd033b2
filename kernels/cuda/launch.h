// Small helpers shared by the .cu files: grid sizing and the post-launch check.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace stimloop::cuda {

inline constexpr int kThreadsPerBlock = 256;

inline unsigned int blocks_for(std::int64_t work, int threads = kThreadsPerBlock) {
  return static_cast<unsigned int>((work + threads - 1) / threads);
}

// A launch error (bad configuration) is reported here; execution errors surface at the next sync.
inline Status check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return Status::Ok();
  return internal_error(std::string("launch of ") + kernel + " failed: " + cudaGetErrorName(err) +
                        " (" + cudaGetErrorString(err) + ")");
}

// Launches `kernel` over `work` items (grid-stride kernels), skipping empty work and checking the
// launch. Only .cu files include this header.
template <typename Kernel, typename... Args>
Status launch_1d(const char* name, std::int64_t work, int lanes_per_item, cudaStream_t stream,
                 Kernel kernel, Args... args) {
  if (work == 0) return Status::Ok();
  kernel<<<blocks_for(work * lanes_per_item), kThreadsPerBlock, 0, stream>>>(args...);
  return check_launch(name);
}

// Position of flat index i in an (n, h, w, c) channels-last tensor.
struct NhwcIndex {
  int b, y, x, c;
};
__device__ inline NhwcIndex unravel_nhwc(std::int64_t i, int h, int w, int c) {
  NhwcIndex idx;
  idx.c = static_cast<int>(i % c);
  i /= c;
  idx.x = static_cast<int>(i % w);
  i /= w;
  idx.y = static_cast<int>(i % h);
  idx.b = static_cast<int>(i / h);
  return idx;
}

// Grid-stride loop over [0, total).
#define STIMLOOP_GRID_LOOP(i, total)                                                      \
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < (total); \
       i += std::int64_t{gridDim.x} * blockDim.x)

}  // namespace stimloop::cuda
