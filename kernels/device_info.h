// What accelerator this process can use. Safe to call on any machine: without a driver or a GPU
// (cudaErrorInsufficientDriver, no device) it reports none rather than failing. Built without
// CUDA it always reports none.
#pragma once

#include <cstdint>
#include <string>

namespace stimloop {

struct DeviceInfo {
  bool cuda_compiled = false;  // this binary has the CUDA code
  bool available = false;      // a usable GPU was found
  std::string name;            // e.g. "NVIDIA H200"
  int compute_capability = 0;  // 90 for sm_90
  int multiprocessors = 0;
  std::int64_t memory_bytes = 0;
  std::string reason;  // why no GPU is used, when !available
};

DeviceInfo probe_device();

}  // namespace stimloop
