// CPU backend: runs the op chain layer by layer on host memory, keeping every layer's output
// for the backward pass (its ReLU mask). Large batches run in chunks so the workspace stays
// bounded; buffers are reused across calls, so repeated calls of the same batch size (a synthesis
// loop) allocate nothing.
#include <omp.h>

#include <algorithm>
#include <mutex>
#include <span>
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
// forward, 2 threads, 2-core VM). Split evenly among the threads when they take whole images.
constexpr std::int64_t kWorkspaceBudgetBytes = std::int64_t{16} << 20;

// What one pass over a chunk of images keeps: every layer's output (the backward pass needs them
// for its ReLU masks), the two gradient buffers the backward pass swaps, and the output seed.
struct Workspace {
  std::vector<std::vector<float>> activations;
  std::vector<float> grad_a, grad_b, seed;
};

// Runs the op chain layer by layer over a chunk of m images with one workspace. Inside an
// active OpenMP region (one thread per group of whole images) each layer runs on the calling
// thread alone; outside, each layer spreads its rows over the threads.
void run_forward(const Network& net, Workspace& ws, const float* images, int m) {
  const auto& layers = net.layers;
  ws.activations.resize(layers.size());
  const float* in = images;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const auto& layer = layers[l];
    auto& out = ws.activations[l];
    out.resize(static_cast<std::size_t>(m * layer.params.out_size()));
    cpu::layer_forward(layer.params, m, in, layer.weights.data(),
                       layer.bias.empty() ? nullptr : layer.bias.data(), out.data());
    in = out.data();
  }
}

// Walks the chain backwards from ws.seed; grad_a holds d/d(output of layer l), grad_b receives
// d/d(input). The ReLU mask of layer l's output is applied by layer l + 1's backward as it writes
// that gradient (fused into the depthwise kernels, which produce it in every published model): a
// pass of its own over layer 0's 577k gradients was an eighth of a synthesis step.
void run_backward(const Network& net, Workspace& ws, int m, float* d_images) {
  const auto& layers = net.layers;
  const std::int64_t out_size = net.num_outputs();
  // Both gradient buffers hold the largest gradient of the chain and are never resized in the
  // loop: they swap every layer, and growing the smaller one zero-filled megabytes a step.
  std::int64_t largest = m * out_size;
  for (const auto& layer : layers) largest = std::max(largest, m * layer.params.in_size());
  if (ws.grad_a.size() < std::size_t(largest)) ws.grad_a.resize(largest);
  if (ws.grad_b.size() < std::size_t(largest)) ws.grad_b.resize(largest);
  std::copy_n(ws.seed.data(), m * out_size, ws.grad_a.data());
  if (layers.back().params.relu) {  // the last layer's own ReLU: nobody above to fuse it
    const float* act = ws.activations.back().data();
    float* g = ws.grad_a.data();
    for (std::int64_t i = 0; i < m * out_size; ++i) g[i] = act[i] <= 0.0f ? 0.0f : g[i];
  }
  for (std::size_t l = layers.size(); l-- > 0;) {
    const auto& p = layers[l].params;
    float* d_in;
    const float* in_relu = nullptr;
    if (l == 0) {
      d_in = d_images;
    } else {
      d_in = ws.grad_b.data();
      if (layers[l - 1].params.relu) in_relu = ws.activations[l - 1].data();
    }
    cpu::layer_backward_input(p, m, ws.grad_a.data(), layers[l].weights.data(), d_in, in_relu);
    if (l != 0) std::swap(ws.grad_a, ws.grad_b);
  }
}

// A contiguous group of images [first, first + count) that one workspace takes in one pass; a
// round is a set of groups that run at once, one thread each.
struct Group {
  int first = 0, count = 0;
};

class CpuResidentNetwork final : public ResidentNetwork {
 public:
  explicit CpuResidentNetwork(std::shared_ptr<const Network> net)
      : net_(std::move(net)), chunk_(net_->images_per_chunk(kWorkspaceBudgetBytes, kMaxBatch)) {}

  const Network& network() const override { return *net_; }

  Status forward(std::span<const float> images, int n, std::span<float> outputs) override {
    RETURN_IF_ERROR(check_forward_args(images.size(), n, outputs.size()));
    std::lock_guard lock(mutex_);
    for_each_round(n, [&](std::span<const Group> round) { forward_round(round, images, outputs); });
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
    for_each_round(n, [&](std::span<const Group> round) {
      forward_round(round, images, outputs);
      // The seed function is the caller's code: called on this thread, group by group in order,
      // never from two threads at once.
      for (std::size_t t = 0; t < round.size(); ++t) {
        const Group& g = round[t];
        Workspace& ws = workspaces_[t];
        ws.seed.resize(static_cast<std::size_t>(g.count * out_size));
        seed(g.first, g.count, outputs.subspan(g.first * out_size, g.count * out_size), ws.seed);
      }
      for_each_group(round, [&](const Group& g, Workspace& ws) {
        run_backward(*net_, ws, g.count, d_images.data() + g.first * in_size);
      });
    });
    return Status::Ok();
  }

 private:
  // The forward pass of each group of a round, its outputs copied to theirs in `outputs`.
  void forward_round(std::span<const Group> round, std::span<const float> images,
                     std::span<float> outputs) {
    const std::int64_t in_size = net_->input_size(), out_size = net_->num_outputs();
    for_each_group(round, [&](const Group& g, Workspace& ws) {
      run_forward(*net_, ws, images.data() + g.first * in_size, g.count);
      std::copy_n(ws.activations.back().data(), g.count * out_size,
                  outputs.data() + g.first * out_size);
    });
  }

  // Spreads a call's n images and runs fn(round) for each round of groups. Batches of at least
  // two images a thread go out as whole images, one group per thread per round: each thread runs
  // every layer on its own images, so there is no barrier between layers and each core keeps its
  // own activations in its own cache (row bands cost a fork and a barrier per layer, which the
  // small late layers of a compact model, microseconds of work, cannot repay: batch-64 forward
  // 1657 -> 2283 images/s, median model, 2 threads). What is left over (fewer images than
  // threads, or the tail of a batch) runs one group a round with each layer split into row bands.
  // Every output element is computed the same way either way, so results do not depend on the
  // split. The thread count is read per call (a setting that may change between calls); the
  // round and the workspaces are reused, so a repeated call allocates nothing.
  template <typename Fn>
  void for_each_round(int n, const Fn& fn) {
    const int threads = std::max(1, omp_get_max_threads());
    int start = 0;
    if (threads > 1 && n >= 2 * threads) {
      const int per_thread = net_->images_per_chunk(kWorkspaceBudgetBytes / threads, kMaxBatch);
      const int whole = n / threads * threads;  // images that divide evenly among the threads
      if (workspaces_.size() < std::size_t(threads)) workspaces_.resize(threads);
      while (start < whole) {
        const int each = std::min(per_thread, (whole - start) / threads);
        round_.clear();
        for (int t = 0; t < threads; ++t) round_.push_back({start + t * each, each});
        fn(std::span<const Group>(round_));
        start += threads * each;
      }
    }
    if (workspaces_.empty()) workspaces_.resize(1);
    for (; start < n; start += chunk_) {
      round_.assign(1, Group{start, std::min(chunk_, n - start)});
      fn(std::span<const Group>(round_));
    }
  }

  // Runs fn(group, its workspace) for each group of a round: one thread per group when there are
  // several (the layers inside then run serially), else on this thread with row-parallel layers.
  template <typename Fn>
  void for_each_group(std::span<const Group> round, const Fn& fn) {
    if (round.size() == 1) {
      fn(round[0], workspaces_[0]);
      return;
    }
    const int groups = static_cast<int>(round.size());
#pragma omp parallel for schedule(static, 1) num_threads(groups)
    for (int t = 0; t < groups; ++t) fn(round[t], workspaces_[t]);
  }

  std::shared_ptr<const Network> net_;
  int chunk_;
  std::mutex mutex_;                   // one call at a time: the workspaces below are shared
  std::vector<Workspace> workspaces_;  // one per thread; [0] also serves row-parallel groups
  std::vector<Group> round_;
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

std::int64_t cpu_workspace_budget_bytes() { return kWorkspaceBudgetBytes; }

}  // namespace stimloop
