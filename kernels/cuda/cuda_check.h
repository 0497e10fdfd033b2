// CUDA error handling: CUDA_RETURN_IF_ERROR(expr) turns a failing cudaError_t into a Status that
// names the expression and file:line. Never aborts: a request path must survive a GPU error.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "common/status.h"

namespace stimloop::cuda {

inline Status cuda_status(cudaError_t err, const char* expr, const char* file, int line) {
  if (err == cudaSuccess) return Status::Ok();
  return {StatusCode::kInternal, std::string(expr) + " failed at " + file + ":" +
                                     std::to_string(line) + ": " + cudaGetErrorName(err) + " (" +
                                     cudaGetErrorString(err) + ")"};
}

}  // namespace stimloop::cuda

#define CUDA_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::stimloop::cuda::cuda_status((expr), #expr, __FILE__, __LINE__))
