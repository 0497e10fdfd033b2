// CUDA backend: the network's weights are copied to device memory once, at upload, and stay
// there; each call moves only the images in and the outputs (and gradients) out. The layer loop
// mirrors the CPU backend's, so the two can be compared op by op; ReLU masks are fused into the
// backward kernels. Whole synthesis steps on the device (graph-captured) build on this.
#include <algorithm>
#include <mutex>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/ops.h"
#include "kernels/device_info.h"

namespace stimloop {
namespace {

// Activations per chunk; 1 GiB leaves the rest of the card to other models and campaigns.
constexpr std::int64_t kDeviceWorkspaceBytes = std::int64_t{1} << 30;

struct DeviceLayer {
  cuda::DeviceBuffer<float> weights;
  cuda::DeviceBuffer<float> bias;
};

class CudaResidentNetwork final : public ResidentNetwork {
 public:
  CudaResidentNetwork(std::shared_ptr<const Network> net, cudaStream_t stream)
      : net_(std::move(net)),
        chunk_(net_->images_per_chunk(kDeviceWorkspaceBytes, kMaxBatch)),
        stream_(stream) {}
  ~CudaResidentNetwork() override {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }

  Status upload_weights() {
    layers_.resize(net_->layers.size());
    for (std::size_t l = 0; l < net_->layers.size(); ++l) {
      const auto& src = net_->layers[l];
      RETURN_IF_ERROR(layers_[l].weights.allocate(src.weights.size()));
      RETURN_IF_ERROR(layers_[l].weights.upload(src.weights.data(), src.weights.size(), stream_));
      if (!src.bias.empty()) {
        RETURN_IF_ERROR(layers_[l].bias.allocate(src.bias.size()));
        RETURN_IF_ERROR(layers_[l].bias.upload(src.bias.data(), src.bias.size(), stream_));
      }
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

  const Network& network() const override { return *net_; }

  Status forward(std::span<const float> images, int n, std::span<float> outputs) override {
    RETURN_IF_ERROR(check_forward_args(images.size(), n, outputs.size()));
    std::lock_guard lock(mutex_);
    const std::int64_t in_size = net_->input_size(), out_size = net_->num_outputs();
    for (int start = 0; start < n; start += chunk_) {
      const int m = std::min(chunk_, n - start);
      RETURN_IF_ERROR(ensure_workspace(m));
      RETURN_IF_ERROR(input_.upload(images.data() + start * in_size, m * in_size, stream_));
      RETURN_IF_ERROR(run_forward(m));
      RETURN_IF_ERROR(
          activations_.back().download(outputs.data() + start * out_size, m * out_size, stream_));
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

  Status vector_jacobian(std::span<const float> images, int n, const SeedFunction& seed,
                         std::span<float> outputs, std::span<float> d_images) override {
    RETURN_IF_ERROR(check_forward_args(images.size(), n, outputs.size()));
    if (d_images.size() != images.size()) {
      return invalid_argument("d_images buffer does not match the batch");
    }
    std::lock_guard lock(mutex_);
    const std::int64_t in_size = net_->input_size(), out_size = net_->num_outputs();
    for (int start = 0; start < n; start += chunk_) {
      const int m = std::min(chunk_, n - start);
      RETURN_IF_ERROR(ensure_workspace(m));
      RETURN_IF_ERROR(input_.upload(images.data() + start * in_size, m * in_size, stream_));
      RETURN_IF_ERROR(run_forward(m));
      const std::span<float> chunk_out(outputs.data() + start * out_size, m * out_size);
      RETURN_IF_ERROR(activations_.back().download(chunk_out.data(), chunk_out.size(), stream_));
      // The seed may depend on the outputs: they must be on the host before it is computed.
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      seed_.resize(chunk_out.size());
      seed(start, m, chunk_out, seed_);
      RETURN_IF_ERROR(grad_a_.upload(seed_.data(), seed_.size(), stream_));
      RETURN_IF_ERROR(run_backward(m));
      RETURN_IF_ERROR(d_input_.download(d_images.data() + start * in_size, m * in_size, stream_));
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

 private:
  Status ensure_workspace(int m) {
    if (m <= workspace_images_) return Status::Ok();
    const auto& layers = net_->layers;
    std::int64_t widest = net_->input_size();
    activations_.resize(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      RETURN_IF_ERROR(activations_[l].allocate(m * layers[l].params.out_size()));
      widest = std::max({widest, layers[l].params.out_size(), layers[l].params.in_size()});
    }
    RETURN_IF_ERROR(input_.allocate(m * net_->input_size()));
    RETURN_IF_ERROR(d_input_.allocate(m * net_->input_size()));
    RETURN_IF_ERROR(grad_a_.allocate(m * widest));
    RETURN_IF_ERROR(grad_b_.allocate(m * widest));
    workspace_images_ = m;
    return Status::Ok();
  }

  Status run_forward(int m) {
    const float* in = input_.data();
    for (std::size_t l = 0; l < net_->layers.size(); ++l) {
      const auto& p = net_->layers[l].params;
      RETURN_IF_ERROR(cuda::layer_forward(p, m, in, layers_[l].weights.data(),
                                          p.has_bias ? layers_[l].bias.data() : nullptr,
                                          activations_[l].data(), stream_));
      in = activations_[l].data();
    }
    return Status::Ok();
  }

  // grad_a_ holds d/d(output of layer l) on entry to each iteration.
  Status run_backward(int m) {
    float* grad_in = grad_a_.data();
    float* grad_out = grad_b_.data();
    for (std::size_t l = net_->layers.size(); l-- > 0;) {
      const auto& p = net_->layers[l].params;
      float* d_in = l == 0 ? d_input_.data() : grad_out;
      RETURN_IF_ERROR(cuda::layer_backward_input(p, m, grad_in,
                                                 p.relu ? activations_[l].data() : nullptr,
                                                 layers_[l].weights.data(), d_in, stream_));
      std::swap(grad_in, grad_out);
    }
    return Status::Ok();
  }

  std::shared_ptr<const Network> net_;
  int chunk_;
  cudaStream_t stream_;
  std::mutex mutex_;
  std::vector<DeviceLayer> layers_;
  int workspace_images_ = 0;
  std::vector<cuda::DeviceBuffer<float>> activations_;
  cuda::DeviceBuffer<float> input_, d_input_, grad_a_, grad_b_;
  std::vector<float> seed_;  // host copy of the current chunk's seed
};

class CudaBackend final : public Backend {
 public:
  std::string name() const override { return "cuda"; }
  StatusOr<std::unique_ptr<ResidentNetwork>> upload(
      std::shared_ptr<const Network> network) override {
    if (!network || network->layers.empty()) return invalid_argument("empty network");
    cudaStream_t stream = nullptr;
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    auto resident = std::make_unique<CudaResidentNetwork>(std::move(network), stream);
    RETURN_IF_ERROR(resident->upload_weights());
    return std::unique_ptr<ResidentNetwork>(std::move(resident));
  }
  // Device-wide (the driver's view): what this process and any other hold on the GPU.
  std::int64_t memory_in_use() const override {
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return -1;
    return static_cast<std::int64_t>(total_bytes - free_bytes);
  }
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> make_cuda_backend() {
  const DeviceInfo device = probe_device();
  if (!device.available) return failed_precondition("CUDA backend unavailable: " + device.reason);
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>());
}

}  // namespace stimloop
