#include "kernels/backend.h"

namespace stimloop {

StatusOr<std::unique_ptr<Backend>> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") return make_cuda_backend();
  if (name == "cudnn") return make_cudnn_backend();
  if (name == "cudnn-tf32") return make_cudnn_backend(/*tf32=*/true);
  if (name == "auto") {
    auto cuda = make_cuda_backend();  // no usable GPU: fall back to the CPU
    if (cuda.ok()) return cuda;
    return make_cpu_backend();
  }
  return invalid_argument("--backend " + name +
                          ": unknown backend (choose cpu, cuda, cudnn, cudnn-tf32 or auto)");
}

}  // namespace stimloop
