// Probes the first CUDA device. Any error (no driver: 35, no device: 100) means "no GPU", so
// callers fall back to the CPU backend; nothing here aborts.
#include <cuda_runtime_api.h>

#include "kernels/device_info.h"

namespace stimloop {

DeviceInfo probe_device() {
  DeviceInfo info;
  info.cuda_compiled = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    info.reason = err != cudaSuccess ? std::string("no usable CUDA driver or device (") +
                                           cudaGetErrorName(err) + ")"
                                     : "no CUDA device";
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return info;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    info.reason = "cudaGetDeviceProperties failed";
    cudaGetLastError();
    return info;
  }
  info.available = true;
  info.name = prop.name;
  info.compute_capability = prop.major * 10 + prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.memory_bytes = static_cast<std::int64_t>(prop.totalGlobalMem);
  return info;
}

}  // namespace stimloop
