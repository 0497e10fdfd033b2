// Built when CUDA is off: the binary has no GPU code, so there is never a device to use.
#include "kernels/backend.h"
#include "kernels/device_info.h"

namespace stimloop {

DeviceInfo probe_device() {
  DeviceInfo info;
  info.reason = "built without CUDA (STIMLOOP_CUDA=OFF or no nvcc at configure time)";
  return info;
}

StatusOr<std::unique_ptr<Backend>> make_cuda_backend() {
  return failed_precondition("CUDA backend unavailable: " + probe_device().reason);
}

StatusOr<std::unique_ptr<Backend>> make_cudnn_backend(bool) {
  return failed_precondition("cuDNN backend unavailable: " + probe_device().reason);
}

}  // namespace stimloop
