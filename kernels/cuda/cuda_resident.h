// A network resident on the GPU: weights uploaded once (by its LayerRunner, custom kernels or
// cuDNN), activations in a workspace reused between calls. Each call moves only the images in
// and the outputs (and gradients) out. The device synthesis (device_synthesis.cu) reaches the
// runner to drive the layers without host round trips.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/layer_runner.h"

namespace stimloop::cuda {

class CudaResidentNetwork final : public ResidentNetwork {
 public:
  // Takes ownership of `stream`.
  CudaResidentNetwork(std::shared_ptr<const Network> net, cudaStream_t stream);
  ~CudaResidentNetwork() override;
  Status init(bool use_cudnn, bool tf32 = false);

  const Network& network() const override { return *net_; }
  Status forward(std::span<const float> images, int n, std::span<float> outputs) override;
  Status vector_jacobian(std::span<const float> images, int n, const SeedFunction& seed,
                         std::span<float> outputs, std::span<float> d_images) override;

  LayerRunner& runner() { return *runner_; }
  // The custom-kernel runner, or nullptr on the cuDNN path.
  CustomLayerRunner* custom_runner() { return custom_; }
  std::shared_ptr<const Network> shared_network() const { return net_; }

 private:
  Status ensure_workspace(int m);
  Status run_forward(int m);
  Status run_backward(int m);  // grad_a_ holds d/d(output of the last layer) on entry

  std::shared_ptr<const Network> net_;
  int chunk_;
  cudaStream_t stream_;
  std::mutex mutex_;
  std::unique_ptr<LayerRunner> runner_;
  CustomLayerRunner* custom_ = nullptr;
  int workspace_images_ = 0;
  std::vector<DeviceBuffer<float>> activations_;
  DeviceBuffer<float> input_, d_input_, grad_a_, grad_b_;
  std::vector<float> seed_;  // host copy of the current chunk's seed
};

}  // namespace stimloop::cuda
