// Kernel choice and launch: one place decides which variant runs a set of tasks, so the single-
// layer calls and the grouped launches always agree. STIMLOOP_CUDA_KERNELS=plain selects the
// straightforward kernels everywhere (the reference the tuned ones are tested against).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernels/cuda/kernel_variant.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ops.h"

namespace stimloop::cuda {
namespace {

// The tiled dense-convolution kernels' shape: stride 1, three input channels, square 3 or 5.
int tiled_conv_k(const LayerParams& p) {
  if (p.kind != LayerKind::kConv2D || p.stride_h != 1 || p.stride_w != 1 || p.in_c != 3 ||
      p.k_h != p.k_w || (p.k_h != 3 && p.k_h != 5)) {
    return 0;
  }
  return p.k_h;
}

bool plain_kernels() {
  const char* env = std::getenv("STIMLOOP_CUDA_KERNELS");
  return env != nullptr && std::strcmp(env, "plain") == 0;
}

const KernelVariant& choose(Pass pass, const OpTask* tasks, int count) {
  const LayerParams& first = tasks[0].p;
  const bool plain = plain_kernels();
  switch (first.kind) {
    case LayerKind::kConv2D: {
      const int k = tiled_conv_k(first);
      const bool tiled = !plain && k != 0 &&
                         std::all_of(tasks, tasks + count,
                                     [&](const OpTask& t) { return tiled_conv_k(t.p) == k; });
      if (pass == Pass::kForward) {
        if (!tiled) return kConv2dForward;
        return k == 3 ? kConv2dForwardTiled3 : kConv2dForwardTiled5;
      }
      if (!tiled) return kConv2dBackward;
      return k == 3 ? kConv2dBackwardTiled3 : kConv2dBackwardTiled5;
    }
    case LayerKind::kDepthwise: {
      const bool tiled =
          !plain && pass == Pass::kForward &&
          std::all_of(tasks, tasks + count, [](const OpTask& t) {
            return t.p.k_h <= 5 && t.p.k_w <= 5 && t.p.stride_h <= 2 && t.p.stride_w <= 2;
          });
      if (pass == Pass::kForward) return tiled ? kDepthwiseForwardTiled : kDepthwiseForward;
      if (plain) return kDepthwiseBackward;
      const bool quad = std::all_of(
          tasks, tasks + count, [](const OpTask& t) { return depthwise_backward_quad_shape(t.p); });
      return quad ? kDepthwiseBackwardQuad : kDepthwiseBackwardGather;
    }
    case LayerKind::kPointwise: {
      if (pass == Pass::kBackward) return plain ? kPointwiseBackward : kPointwiseBackwardGemm;
      // The Dense readout (one pixel, thousands of inputs): a block per output value. Shorter
      // reductions (the shared models' 200-channel pointwise layers) stay GEMMs.
      constexpr int kLongReduction = 512;
      const bool long_reductions = std::all_of(
          tasks, tasks + count, [](const OpTask& t) { return t.p.in_c >= kLongReduction; });
      if (long_reductions) return plain ? kPointwiseForward : kPointwiseForwardBlock;
      return plain ? kPointwiseForward : kPointwiseForwardGemm;
    }
  }
  return kConv2dForward;  // unreachable: every kind is handled above
}

// Assigns block ranges; returns the total, or -1 when it exceeds a grid.
std::int64_t lay_out_blocks(const KernelVariant& v, OpTask* tasks, int count) {
  std::int64_t total = 0;
  for (int i = 0; i < count; ++i) {
    tasks[i].first_block = total;
    total += v.blocks(tasks[i]);
  }
  return total <= std::numeric_limits<int>::max() ? total : -1;
}

Status launch_variant(const KernelVariant& v, std::int64_t blocks, const TaskList& list,
                      cudaStream_t stream) {
  if (blocks == 0) return Status::Ok();
  v.launch(static_cast<unsigned int>(blocks), stream, list);
  return check_launch(v.name);
}

Status run_single(Pass pass, OpTask task, cudaStream_t stream) {
  if (task.n == 0) return Status::Ok();
  const KernelVariant& v = choose(pass, &task, 1);
  const std::int64_t blocks = lay_out_blocks(v, &task, 1);
  if (blocks < 0) return invalid_argument("batch too large for one launch; split it");
  TaskList list;
  list.single = task;
  return launch_variant(v, blocks, list, stream);
}

}  // namespace

Status layer_forward(const LayerParams& p, int n, const float* in, const float* w,
                     const float* bias, float* out, cudaStream_t stream) {
  OpTask t{};
  t.p = p, t.n = n, t.in = in, t.w = w, t.bias = bias, t.out = out;
  return run_single(Pass::kForward, t, stream);
}

Status layer_backward_input(const LayerParams& p, int n, const float* d_out, const float* relu_out,
                            const float* w, float* d_in, cudaStream_t stream) {
  OpTask t{};
  t.p = p, t.n = n, t.in = d_out, t.aux = relu_out, t.w = w, t.out = d_in;
  return run_single(Pass::kBackward, t, stream);
}

Status GroupedOp::prepare(Pass pass, std::vector<OpTask> tasks, cudaStream_t stream) {
  count_ = 0;
  total_blocks_ = 0;
  variant_ = nullptr;
  if (tasks.empty()) return Status::Ok();
  for (const OpTask& t : tasks) {
    if (t.p.kind != tasks[0].p.kind) return invalid_argument("grouped op mixes layer kinds");
  }
  variant_ = &choose(pass, tasks.data(), static_cast<int>(tasks.size()));
  total_blocks_ = lay_out_blocks(*variant_, tasks.data(), static_cast<int>(tasks.size()));
  if (total_blocks_ < 0) return invalid_argument("grouped op too large for one launch");
  if (tasks.size() == 1) {  // a rig's single model: its blocks skip the table lookup
    single_ = tasks[0];
    count_ = 1;
    return Status::Ok();
  }
  RETURN_IF_ERROR(table_.allocate(tasks.size()));
  RETURN_IF_ERROR(table_.upload(tasks.data(), tasks.size(), stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // `tasks` is freed on return
  count_ = static_cast<int>(tasks.size());
  return Status::Ok();
}

Status GroupedOp::launch(cudaStream_t stream) const {
  if (count_ == 0) return Status::Ok();
  TaskList list;
  if (count_ == 1) {
    list.single = single_;
  } else {
    list.tasks = table_.data();
    list.count = count_;
  }
  return launch_variant(*variant_, total_blocks_, list, stream);
}

const char* GroupedOp::kernel_name() const { return variant_ != nullptr ? variant_->name : ""; }

}  // namespace stimloop::cuda
