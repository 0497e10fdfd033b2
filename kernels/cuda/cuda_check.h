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

// Two timing events, destroyed with the object (so every early return releases them); create()
// makes both.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() = default;
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  ~EventPair() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  }
  cudaError_t create() {
    const cudaError_t e = cudaEventCreate(&start);
    return e != cudaSuccess ? e : cudaEventCreate(&stop);
  }
};

}  // namespace stimloop::cuda

#define CUDA_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::stimloop::cuda::cuda_status((expr), #expr, __FILE__, __LINE__))
