// Small helpers shared by the .cu files: grid sizing and the post-launch check.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_check.h"

namespace stimloop::cuda {

inline unsigned int blocks_for(std::int64_t work, int threads) {
  return static_cast<unsigned int>((work + threads - 1) / threads);
}

// A launch error (bad configuration) is reported here; execution errors surface at the next sync.
inline Status check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return Status::Ok();
  return internal_error(std::string("launch of ") + kernel + " failed: " + cudaGetErrorName(err) +
                        " (" + cudaGetErrorString(err) + ")");
}

}  // namespace stimloop::cuda
