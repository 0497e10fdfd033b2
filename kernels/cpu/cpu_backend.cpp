// CPU backend: runs the op chain layer by layer on host memory, keeping every layer's output
// for the backward pass (its ReLU mask). Large batches run in chunks so the workspace stays
// bounded; buffers are reused across calls, so repeated calls of the same batch size (a synthesis
// loop) allocate nothing.
#include <algorithm>
#include <mutex>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/ops.h"

namespace stimloop {

Status ResidentNetwork::check_forward_args(std::size_t images, int n, std::size_t outputs) const {
  const Network& net = network();
  if (n <= 0 || n > kMaxBatch) {
    return invalid_argument("batch size " + std::to_string(n) + " is outside 1.." +
                            std::to_string(kMaxBatch));
  }
  if (images != static_cast<std::size_t>(n * net.input_size())) {
    return invalid_argument("images buffer holds " + std::to_string(images) + " floats, expected " +
                            std::to_string(n * net.input_size()));
  }
  if (outputs != static_cast<std::size_t>(n * net.num_outputs())) {
    return invalid_argument("outputs buffer holds " + std::to_string(outputs) +
                            " floats, expected " + std::to_string(n * net.num_outputs()));
  }
  return Status::Ok();
}

Status ResidentNetwork::input_gradient(std::span<const float> images, int n,
                                       std::span<const float> output_seed, std::span<float> outputs,
                                       std::span<float> d_images) {
  if (output_seed.size() != outputs.size()) {
    return invalid_argument("output_seed holds " + std::to_string(output_seed.size()) +
                            " floats, expected " + std::to_string(outputs.size()));
  }
  const std::int64_t per_image = network().num_outputs();
  return vector_jacobian(
      images, n,
      [&](int first, int count, std::span<const float>, std::span<float> seed_out) {
        std::copy_n(output_seed.data() + first * per_image, count * per_image, seed_out.data());
      },
      outputs, d_images);
}

namespace {

// Keep a chunk's activations under this many bytes: about what the caches hold, so each layer
// reads its input from cache rather than memory (a median compact model holds ~4 MB of
// activations per image: 3-4 images a chunk; a 200-filter shared model ~10 MB: one). With a
// 256 MB budget, batch 64 ran a third slower per image than batch 1 (1196 against 1700 images/s
// forward, 2 threads, 2-core VM).
constexpr std::int64_t kWorkspaceBudgetBytes = std::int64_t{16} << 20;

class CpuResidentNetwork final : public ResidentNetwork {
 public:
  explicit CpuResidentNetwork(std::shared_ptr<const Network> net)
      : net_(std::move(net)), chunk_(net_->images_per_chunk(kWorkspaceBudgetBytes, kMaxBatch)) {}

  const Network& network() const override { return *net_; }

  Status forward(std::span<const float> images, int n, std::span<float> outputs) override {
    RETURN_IF_ERROR(check_forward_args(images.size(), n, outputs.size()));
    std::lock_guard lock(mutex_);
    for (int start = 0; start < n; start += chunk_) {
      const int m = std::min(chunk_, n - start);
      run_forward(images.data() + start * net_->input_size(), m);
      const auto& last = activations_.back();
      std::copy_n(last.data(), m * net_->num_outputs(),
                  outputs.data() + start * net_->num_outputs());
    }
    return Status::Ok();
  }

  Status vector_jacobian(std::span<const float> images, int n, const SeedFunction& seed,
                         std::span<float> outputs, std::span<float> d_images) override {
    RETURN_IF_ERROR(check_forward_args(images.size(), n, outputs.size()));
    if (d_images.size() != images.size()) {
      return invalid_argument("d_images holds " + std::to_string(d_images.size()) +
                              " floats, expected " + std::to_string(images.size()));
    }
    std::lock_guard lock(mutex_);
    const std::int64_t in_size = net_->input_size(), out_size = net_->num_outputs();
    for (int start = 0; start < n; start += chunk_) {
      const int m = std::min(chunk_, n - start);
      run_forward(images.data() + start * in_size, m);
      const std::span<float> chunk_out(outputs.data() + start * out_size, m * out_size);
      std::copy_n(activations_.back().data(), chunk_out.size(), chunk_out.data());
      seed_.resize(chunk_out.size());
      seed(start, m, chunk_out, seed_);
      run_backward(seed_.data(), m, d_images.data() + start * in_size);
    }
    return Status::Ok();
  }

 private:
  void run_forward(const float* images, int m) {
    const auto& layers = net_->layers;
    activations_.resize(layers.size());
    const float* in = images;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto& layer = layers[l];
      auto& out = activations_[l];
      out.resize(static_cast<std::size_t>(m * layer.params.out_size()));
      cpu::layer_forward(layer.params, m, in, layer.weights.data(),
                         layer.bias.empty() ? nullptr : layer.bias.data(), out.data());
      in = out.data();
    }
  }

  // Walks the chain backwards; grad_a_ holds d/d(output of layer l), grad_b_ receives d/d(input).
  // The ReLU mask of layer l's output is applied by layer l + 1's backward as it writes that
  // gradient (fused into the depthwise kernels, which produce it in every published model): a
  // pass of its own over layer 0's 577k gradients was an eighth of a synthesis step.
  void run_backward(const float* seed, int m, float* d_images) {
    const auto& layers = net_->layers;
    const std::int64_t out_size = net_->num_outputs();
    // Both gradient buffers hold the largest gradient of the chain and are never resized in the
    // loop: they swap every layer, and growing the smaller one zero-filled megabytes a step.
    std::int64_t largest = m * out_size;
    for (const auto& layer : layers) largest = std::max(largest, m * layer.params.in_size());
    if (grad_a_.size() < std::size_t(largest)) grad_a_.resize(largest);
    if (grad_b_.size() < std::size_t(largest)) grad_b_.resize(largest);
    std::copy_n(seed, m * out_size, grad_a_.data());
    if (layers.back().params.relu) {  // the last layer's own ReLU: nobody above to fuse it
      const float* act = activations_.back().data();
      float* g = grad_a_.data();
      for (std::int64_t i = 0; i < m * out_size; ++i) g[i] = act[i] <= 0.0f ? 0.0f : g[i];
    }
    for (std::size_t l = layers.size(); l-- > 0;) {
      const auto& p = layers[l].params;
      float* d_in;
      const float* in_relu = nullptr;
      if (l == 0) {
        d_in = d_images;
      } else {
        d_in = grad_b_.data();
        if (layers[l - 1].params.relu) in_relu = activations_[l - 1].data();
      }
      cpu::layer_backward_input(p, m, grad_a_.data(), layers[l].weights.data(), d_in, in_relu);
      if (l != 0) std::swap(grad_a_, grad_b_);
    }
  }

  std::shared_ptr<const Network> net_;
  int chunk_;
  std::mutex mutex_;  // one call at a time: the workspace below is shared
  std::vector<std::vector<float>> activations_;
  std::vector<float> grad_a_, grad_b_, seed_;
};

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  StatusOr<std::unique_ptr<ResidentNetwork>> upload(
      std::shared_ptr<const Network> network) override {
    if (!network || network->layers.empty()) return invalid_argument("empty network");
    return std::unique_ptr<ResidentNetwork>(new CpuResidentNetwork(std::move(network)));
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace stimloop
