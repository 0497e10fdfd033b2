// Built when cuDNN is absent: the cudnn backend reports itself unavailable.
#include "kernels/cuda/layer_runner.h"

namespace stimloop::cuda {

StatusOr<std::unique_ptr<LayerRunner>> make_cudnn_runner(const Network&, cudaStream_t, bool) {
  return failed_precondition("this build has no cuDNN");
}

std::size_t cudnn_version() { return 0; }

}  // namespace stimloop::cuda
