// stimloop's own kernels as a LayerRunner: weights copied once, in the network's layout.
#include "kernels/cuda/layer_runner.h"
#include "kernels/cuda/ops.h"

namespace stimloop::cuda {

StatusOr<std::unique_ptr<CustomLayerRunner>> CustomLayerRunner::create(const Network& net,
                                                                       cudaStream_t stream) {
  std::unique_ptr<CustomLayerRunner> runner(new CustomLayerRunner(net));
  runner->layers_.resize(net.layers.size());
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const auto& src = net.layers[l];
    auto& dst = runner->layers_[l];
    RETURN_IF_ERROR(dst.weights.allocate(src.weights.size()));
    RETURN_IF_ERROR(dst.weights.upload(src.weights.data(), src.weights.size(), stream));
    if (!src.bias.empty()) {
      RETURN_IF_ERROR(dst.bias.allocate(src.bias.size()));
      RETURN_IF_ERROR(dst.bias.upload(src.bias.data(), src.bias.size(), stream));
    }
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return StatusOr<std::unique_ptr<CustomLayerRunner>>(std::move(runner));
}

const float* CustomLayerRunner::bias(std::size_t l) const {
  return net_.layers[l].params.has_bias ? layers_[l].bias.data() : nullptr;
}

Status CustomLayerRunner::forward(std::size_t l, int n, const float* in, float* out,
                                  cudaStream_t stream) {
  return layer_forward(net_.layers[l].params, n, in, weights(l), bias(l), out, stream);
}

Status CustomLayerRunner::backward(std::size_t l, int n, const float* d_out, const float* relu_out,
                                   float* d_in, cudaStream_t stream) {
  const LayerParams& p = net_.layers[l].params;
  return layer_backward_input(p, n, d_out, p.relu ? relu_out : nullptr, weights(l), d_in, stream);
}

}  // namespace stimloop::cuda
