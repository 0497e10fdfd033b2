// How a resident network's layers run on the GPU: stimloop's own kernels (ops.h) or cuDNN's
// convolutions (cudnn_runner.cu), behind one interface so the resident network and the device
// synthesis drive either. Each runner owns its device copy of the weights, laid out as its
// kernels want them, uploaded once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/network.h"

namespace stimloop::cuda {

class LayerRunner {
 public:
  virtual ~LayerRunner() = default;
  // Layer `l` over n images: in -> out with the layer's bias and ReLU.
  virtual Status forward(std::size_t l, int n, const float* in, float* out,
                         cudaStream_t stream) = 0;
  // d_in = d(layer l)^T d_out, masked by the layer's ReLU (relu_out: its forward output).
  virtual Status backward(std::size_t l, int n, const float* d_out, const float* relu_out,
                          float* d_in, cudaStream_t stream) = 0;
};

// stimloop's kernels. Its weights stay in the network's own layout, so grouped launches over
// many models (GroupedOp) can point at them directly.
class CustomLayerRunner final : public LayerRunner {
 public:
  static StatusOr<std::unique_ptr<CustomLayerRunner>> create(const Network& net,
                                                             cudaStream_t stream);
  Status forward(std::size_t l, int n, const float* in, float* out, cudaStream_t stream) override;
  Status backward(std::size_t l, int n, const float* d_out, const float* relu_out, float* d_in,
                  cudaStream_t stream) override;
  const float* weights(std::size_t l) const { return layers_[l].weights.data(); }
  const float* bias(std::size_t l) const;

 private:
  explicit CustomLayerRunner(const Network& net) : net_(net) {}
  struct DeviceLayer {
    DeviceBuffer<float> weights, bias;
  };
  const Network& net_;
  std::vector<DeviceLayer> layers_;
};

// cuDNN: FAILED_PRECONDITION when this build has no cuDNN or the library does not initialise.
// FMA math only (float32), or with `tf32` tensor-core math that rounds inputs to TF32.
StatusOr<std::unique_ptr<LayerRunner>> make_cudnn_runner(const Network& net, cudaStream_t stream,
                                                         bool tf32 = false);
// Whether this build has the cuDNN path, and cuDNN's version when it initialises (0 otherwise).
std::size_t cudnn_version();

}  // namespace stimloop::cuda
