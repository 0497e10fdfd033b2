// CUDA backend: the network's weights are copied to device memory once, at upload, and stay
// there; each call moves only the images in and the outputs (and gradients) out. The layer loop
// mirrors the CPU backend's, so the two can be compared op by op; ReLU masks are fused into the
// backward kernels. `cudnn` is the same backend with cuDNN's convolutions (the library baseline).
// Whole synthesis runs on the device: device_synthesis.cu.
#include "kernels/cuda/cuda_resident.h"

#include <algorithm>

#include "kernels/cuda/device_synthesis_cuda.h"
#include "kernels/device_info.h"

namespace stimloop {
namespace cuda {
namespace {

// Activations per chunk; 1 GiB leaves the rest of the card to other models and campaigns.
constexpr std::int64_t kDeviceWorkspaceBytes = std::int64_t{1} << 30;

}  // namespace

CudaResidentNetwork::CudaResidentNetwork(std::shared_ptr<const Network> net, cudaStream_t stream)
    : net_(std::move(net)),
      chunk_(net_->images_per_chunk(kDeviceWorkspaceBytes, kMaxBatch)),
      stream_(stream) {}

CudaResidentNetwork::~CudaResidentNetwork() {
  cudaStreamSynchronize(stream_);
  runner_.reset();
  cudaStreamDestroy(stream_);
}

Status CudaResidentNetwork::init(bool use_cudnn, bool tf32) {
  if (use_cudnn) {
    ASSIGN_OR_RETURN(runner_, make_cudnn_runner(*net_, stream_, tf32));
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(auto custom, CustomLayerRunner::create(*net_, stream_));
  custom_ = custom.get();
  runner_ = std::move(custom);
  return Status::Ok();
}

Status CudaResidentNetwork::forward(std::span<const float> images, int n,
                                    std::span<float> outputs) {
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

Status CudaResidentNetwork::vector_jacobian(std::span<const float> images, int n,
                                            const SeedFunction& seed, std::span<float> outputs,
                                            std::span<float> d_images) {
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

Status CudaResidentNetwork::ensure_workspace(int m) {
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

Status CudaResidentNetwork::run_forward(int m) {
  const float* in = input_.data();
  for (std::size_t l = 0; l < net_->layers.size(); ++l) {
    RETURN_IF_ERROR(runner_->forward(l, m, in, activations_[l].data(), stream_));
    in = activations_[l].data();
  }
  return Status::Ok();
}

Status CudaResidentNetwork::run_backward(int m) {
  float* grad_in = grad_a_.data();
  float* grad_out = grad_b_.data();
  for (std::size_t l = net_->layers.size(); l-- > 0;) {
    float* d_in = l == 0 ? d_input_.data() : grad_out;
    RETURN_IF_ERROR(runner_->backward(l, m, grad_in, activations_[l].data(), d_in, stream_));
    std::swap(grad_in, grad_out);
  }
  return Status::Ok();
}

}  // namespace cuda

namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend(bool use_cudnn, bool tf32) : use_cudnn_(use_cudnn), tf32_(tf32) {}
  std::string name() const override {
    return use_cudnn_ ? (tf32_ ? "cudnn-tf32" : "cudnn") : "cuda";
  }
  StatusOr<std::unique_ptr<ResidentNetwork>> upload(
      std::shared_ptr<const Network> network) override {
    if (!network || network->layers.empty()) return invalid_argument("empty network");
    cudaStream_t stream = nullptr;
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    auto resident = std::make_unique<cuda::CudaResidentNetwork>(std::move(network), stream);
    RETURN_IF_ERROR(resident->init(use_cudnn_, tf32_));
    return std::unique_ptr<ResidentNetwork>(std::move(resident));
  }
  // Device-wide (the driver's view): what this process and any other hold on the GPU.
  std::int64_t memory_in_use() const override {
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return -1;
    return static_cast<std::int64_t>(total_bytes - free_bytes);
  }
  StatusOr<std::unique_ptr<DeviceSynthesis>> start_cowley2026(
      const Cowley2026Settings& settings, const std::vector<SynthesisTarget>& targets) override {
    return cuda::start_device_cowley2026(settings, targets);
  }

 private:
  bool use_cudnn_, tf32_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> make_cuda_backend() {
  const DeviceInfo device = probe_device();
  if (!device.available) return failed_precondition("CUDA backend unavailable: " + device.reason);
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(false, false));
}

StatusOr<std::unique_ptr<Backend>> make_cudnn_backend(bool tf32) {
  const DeviceInfo device = probe_device();
  if (!device.available) return failed_precondition("cuDNN backend unavailable: " + device.reason);
  if (cuda::cudnn_version() == 0) {
    return failed_precondition("cuDNN backend unavailable: this build has no cuDNN");
  }
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(true, tf32));
}

}  // namespace stimloop
