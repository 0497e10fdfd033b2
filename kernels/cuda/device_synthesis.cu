// cowley2026 on the device for many (model, seed) images at once (kernels/device_synthesis.h).
//
// Layout: every target (one model, `count` seeds) gets its own activations and gradient buffers;
// the images of all targets share one float64 state (synthesis_kernels.h). Per step:
//   update (all images) -> forward -> record best -> backward to the image
// and on the authors' blur steps (t > 0, t % every == 0), after the record:
//   blur images -> forward -> backward    (the gradient at the blurred image, as the host loop)
// The objective's seed (sign at the chosen output) never changes, so it is written once into a
// buffer the backward pass only reads.
//
// Targets on stimloop's kernels with the same sequence of layer kinds form a group: each layer
// of a group is ONE grouped launch over all of its targets (grouped.h). Targets on cuDNN run
// one after another. Both step shapes are captured once as CUDA graphs, so a step costs one
// graph launch; cuDNN targets (and any failed capture) run the same launches directly, and
// description() says so.
//
// STIMLOOP_CUDA_STEP=persistent runs the steps instead in one cooperative kernel per run() call
// (persistent_synthesis.h: no kernel boundary inside a step, a grid barrier between phases), on
// the same buffers, for custom-kernel targets of one depth; anything else falls back to the
// graphs and description() says why. STIMLOOP_CUDA_STEP=graph (or unset) keeps the graphs.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "kernels/cuda/cuda_resident.h"
#include "kernels/cuda/device_synthesis_cuda.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/persistent_synthesis.h"
#include "kernels/cuda/synthesis_kernels.h"

namespace stimloop::cuda {
namespace {

struct TargetBuffers {
  CudaResidentNetwork* net = nullptr;
  int count = 0;
  int first_image = 0;
  std::vector<DeviceBuffer<float>> activations;  // per layer: count x out_size
  DeviceBuffer<float> seed, grad_a, grad_b;
  DeviceBuffer<float> top_grad;  // persistent step: the constant gradient at the last layer's input
  // Persistent step: per layer, the transposed and the padded weights (layer_weight_copies).
  std::vector<DeviceBuffer<float>> weight_copies;
};

struct Group {
  std::vector<int> targets;
  std::vector<GroupedOp> forward, backward;  // per layer
};

class CudaSynthesis final : public DeviceSynthesis {
 public:
  ~CudaSynthesis() override {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (cudaGraphExec_t g : {step_graph_, blur_graph_}) {
      if (g != nullptr) cudaGraphExecDestroy(g);
    }
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  Status init(const Cowley2026Settings& settings, const std::vector<SynthesisTarget>& targets) {
    if (targets.empty()) return invalid_argument("no synthesis targets");
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    settings_ = settings;
    ASSIGN_OR_RETURN(step_.gradient_blur, make_blur_taps(settings.gradient_sigma));
    ASSIGN_OR_RETURN(image_blur_, make_blur_taps(settings.image_sigma));
    step_.step_size = settings.step_size;
    step_.grayscale = settings.grayscale;
    for (int c = 0; c < 3; ++c) step_.means[c] = settings.means[c];
    RETURN_IF_ERROR(allocate_targets(targets));
    RETURN_IF_ERROR(build_groups());
    RETURN_IF_ERROR(upload_state(targets));
    RETURN_IF_ERROR(choose_step());
    // The gradient at the initial images (the host loop's first evaluation; not a candidate).
    if (persistent_) {
      // A cooperative launch can still be refused (e.g. the grid does not fit beside another
      // process's kernels): the graph step then runs, and description() says why.
      const Status launched =
          launch_persistent_steps(plan_, persistent_blocks_, 0, 0, blur_every(), true, stream_);
      if (!launched.ok()) {
        persistent_ = false;
        persistent_note_ = launched.message();
        cudaGetLastError();  // clears the launch error
      }
    }
    if (!persistent_) RETURN_IF_ERROR(enqueue_evaluation(false));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    if (!persistent_) capture_graphs();
    return Status::Ok();
  }

  Status run(int steps) override {
    if (persistent_ && steps > 0) {
      RETURN_IF_ERROR(launch_persistent_steps(plan_, persistent_blocks_, steps_done_, steps,
                                              blur_every(), false, stream_));
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      steps_done_ += steps;
      return Status::Ok();
    }
    for (int k = 0; k < steps; ++k) {
      const bool blur = is_blur_step(steps_done_);
      if (graphs_) {
        CUDA_RETURN_IF_ERROR(cudaGraphLaunch(blur ? blur_graph_ : step_graph_, stream_));
      } else {
        RETURN_IF_ERROR(enqueue_step(blur));
      }
      ++steps_done_;
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

  int steps_done() const override { return steps_done_; }
  int images() const override { return state_.n; }

  Status best(std::vector<double>& values, std::vector<double>& responses,
              std::vector<std::uint8_t>& has_best) override {
    values.resize(state_.n);
    responses.resize(state_.n);
    std::vector<int> flags(state_.n);
    RETURN_IF_ERROR(best_value_.download(values.data(), values.size(), stream_));
    RETURN_IF_ERROR(best_response_.download(responses.data(), responses.size(), stream_));
    RETURN_IF_ERROR(has_best_.download(flags.data(), flags.size(), stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    has_best.assign(flags.begin(), flags.end());
    return Status::Ok();
  }

  Status best_rgb8(std::vector<std::uint8_t>& pixels) override {
    RETURN_IF_ERROR(launch_flush_best(state_, stream_));
    RETURN_IF_ERROR(launch_quantize(state_, step_.means, rgb8_.data(), stream_));
    pixels.resize(rgb8_.size());
    RETURN_IF_ERROR(rgb8_.download(pixels.data(), pixels.size(), stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

  Status images_f64(bool best, std::vector<double>& out) override {
    RETURN_IF_ERROR(launch_flush_best(state_, stream_));
    const DeviceBuffer<double>& source = best ? best_ : x_;
    out.resize(source.size());
    RETURN_IF_ERROR(source.download(out.data(), out.size(), stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

  StatusOr<std::vector<std::pair<std::string, double>>> profile(int steps) override {
    if (persistent_) return profile_persistent(steps);
    std::vector<std::pair<std::string, double>> totals;
    for (int k = 0; k < steps; ++k) {
      const bool blur = is_blur_step(steps_done_);
      std::vector<std::pair<std::string, cudaEvent_t>> marks;
      marks_ = &marks;
      mark("start");
      const Status enqueued = enqueue_step(blur);
      marks_ = nullptr;
      const cudaError_t synced = cudaStreamSynchronize(stream_);
      for (std::size_t m = 1; m < marks.size() && enqueued.ok() && synced == cudaSuccess; ++m) {
        float ms = 0;
        cudaEventElapsedTime(&ms, marks[m - 1].second, marks[m].second);
        auto it = std::find_if(totals.begin(), totals.end(),
                               [&](const auto& e) { return e.first == marks[m].first; });
        if (it == totals.end()) {
          totals.emplace_back(marks[m].first, ms);
        } else {
          it->second += ms;
        }
      }
      for (auto& [label, event] : marks) cudaEventDestroy(event);
      RETURN_IF_ERROR(enqueued);
      CUDA_RETURN_IF_ERROR(synced);
      ++steps_done_;
    }
    return totals;
  }

  std::string description() const override {
    std::string d =
        std::to_string(targets_.size()) + " target(s), " + std::to_string(state_.n) + " image(s); ";
    if (!groups_.empty()) {
      d += "stimloop kernels, " + std::to_string(groups_.size()) + " grouped launch(es) per layer";
    } else {
      d += "cuDNN, one launch per target and layer";
    }
    if (persistent_) {
      // The phases a step has. PhaseCounter runs the program's control flow only, which reads
      // the plan's counts and flags, never its table (a device pointer here).
      persistent::PhaseCounter step;
      persistent::step(step, plan_, false);
      d += "; persistent kernel, " + std::to_string(persistent_blocks_) + " blocks x " +
           std::to_string(kPersistentThreads) + " threads, " + std::to_string(step.syncs) +
           " grid barriers a step, one launch per run";
    } else {
      d += graphs_ ? ", CUDA graph per step" : ", direct launches (graph " + capture_error_ + ")";
      if (!persistent_note_.empty()) d += "; persistent step not used: " + persistent_note_;
    }
    return d;
  }

 private:
  // The authors' image blur follows the evaluation of steps t > 0 with t % every == 0.
  bool is_blur_step(int t) const { return persistent::is_blur_step(t, blur_every()); }
  int blur_every() const {
    return settings_.image_sigma > 0 ? std::max(settings_.image_blur_every, 0) : 0;
  }

  // STIMLOOP_CUDA_STEP: graph (default) or persistent; the persistent step falls back to the
  // graphs where it cannot run, with the reason kept for description().
  Status choose_step() {
    const char* env = std::getenv("STIMLOOP_CUDA_STEP");
    const std::string mode = env != nullptr ? env : "graph";
    if (mode == "graph" || mode.empty()) return Status::Ok();
    if (mode != "persistent") {
      return invalid_argument("STIMLOOP_CUDA_STEP must be graph or persistent, not '" + mode + "'");
    }
    const Status built = build_plan();
    if (!built.ok()) {
      persistent_note_ = built.message();
      return Status::Ok();
    }
    auto blocks = persistent_grid_blocks();
    if (!blocks.ok()) {
      persistent_note_ = blocks.status().message();
      return Status::Ok();
    }
    persistent_blocks_ = *blocks;
    persistent_ = true;
    return Status::Ok();
  }

  // The persistent program's tables: every target's layers with their buffers, the items of
  // each phase numbered target after target (persistent_step.h).
  Status build_plan() {
    if (!solo_.empty()) return failed_precondition("cuDNN targets run layer by layer");
    const int T = static_cast<int>(targets_.size());
    const int L = static_cast<int>(targets_[0].activations.size());
    if (L > persistent::kMaxLayers) return failed_precondition("too many layers");
    for (const TargetBuffers& b : targets_) {
      if (static_cast<int>(b.activations.size()) != L) {
        return failed_precondition("the targets' models differ in depth");
      }
    }
    std::vector<persistent::PlanLayer> table(std::size_t(L) * T);
    persistent::Plan plan;
    plan.targets = T;
    plan.layers = L;
    for (int l = 0; l < L; ++l) {
      for (int t = 0; t < T; ++t) {
        TargetBuffers& b = targets_[t];
        const OpTask f = forward_task(b, l);
        persistent::PlanLayer& e = table[std::size_t(l) * T + t];
        e.p = f.p;
        e.count = b.count;
        e.first_image = b.first_image;
        e.w = f.w;
        const persistent::LayerWeightCopies copies =
            persistent::layer_weight_copies(f.p, b.net->network().layers[l].weights.data());
        b.weight_copies.resize(2 * std::size_t(L));
        ASSIGN_OR_RETURN(e.w_t, upload_copy(copies.transposed, b.weight_copies[2 * l]));
        ASSIGN_OR_RETURN(e.w_blocked, upload_copy(copies.padded, b.weight_copies[2 * l + 1]));
        CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // `copies` is freed next
        e.bias = f.bias;
        e.in = f.in;
        e.out = f.out;
        e.relu_out = f.p.relu ? f.out : nullptr;
      }
    }
    persistent::number_items(table.data(), plan);
    persistent::plan_fusions(table.data(), plan);
    plan.constant_top = persistent::top_gradient_is_constant(table.data(), plan);
    std::vector<persistent::TargetGradients> gradients(T);
    const std::int64_t size = std::int64_t{h_} * w_ * 3;
    for (int t = 0; t < T; ++t) {
      TargetBuffers& b = targets_[t];
      if (plan.constant_top) {
        RETURN_IF_ERROR(b.top_grad.allocate(std::int64_t{b.count} *
                                            b.net->network().layers.back().params.in_size()));
      }
      gradients[t] = {b.grad_a.data(), b.grad_b.data(), d_input_.data() + b.first_image * size,
                      b.seed.data(), b.top_grad.data()};
    }
    persistent::assign_backward_buffers(table.data(), plan, gradients.data());
    persistent::plan_premasks(table.data(), plan);
    RETURN_IF_ERROR(plan_table_.allocate(table.size()));
    RETURN_IF_ERROR(plan_table_.upload(table.data(), table.size(), stream_));
    RETURN_IF_ERROR(row_sums_.allocate(std::size_t(state_.n) * h_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // `table` is freed next
    plan.table = plan_table_.data();
    plan.images = state_;
    plan.row_sums = row_sums_.data();
    plan.step = step_;
    plan.image_blur = image_blur_;
    plan_ = plan;
    return Status::Ok();
  }

  // A plan's weight copy on the device (nullptr for an empty one).
  StatusOr<const float*> upload_copy(const std::vector<float>& host, DeviceBuffer<float>& buffer) {
    if (host.empty()) return static_cast<const float*>(nullptr);
    RETURN_IF_ERROR(buffer.allocate(host.size()));
    RETURN_IF_ERROR(buffer.upload(host.data(), host.size(), stream_));
    return static_cast<const float*>(buffer.data());
  }

  static constexpr int kMaxProfiledPhases = 64;  // a step's phases the profile itemises

  // Whole steps, timed one by one (the persistent kernel has no launches inside a step), and
  // within a step each phase: block 0's SM clock after every barrier, converted at the card's
  // peak clock (so "launch, exit, clock" -- the event time not inside the phases -- also shows
  // any clock below peak). Phases of ordinary steps are itemised, blur steps counted whole; the
  // first entry is the cost of an empty barrier, outside the total.
  StatusOr<std::vector<std::pair<std::string, double>>> profile_persistent(int steps) {
    int device = 0, clock_khz = 0;
    CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
    if (clock_khz <= 0) return internal_error("the device reports no clock rate");
    ASSIGN_OR_RETURN(const double barrier_us, persistent_barrier_us(persistent_blocks_, stream_));
    persistent::PhaseLog log;
    persistent::step(log, plan_, false);
    log.phases.pop_back();  // the step ends with a barrier: the last entry is empty
    const int phases = static_cast<int>(log.phases.size());
    DeviceBuffer<unsigned long long> clock_buffer;
    RETURN_IF_ERROR(clock_buffer.allocate(kMaxProfiledPhases + 1));
    std::vector<unsigned long long> clocks(kMaxProfiledPhases + 1);
    std::vector<double> phase_ms(phases, 0.0);
    double outside_ms = 0.0, blur_ms = 0.0;
    int blur_steps = 0;
    EventPair events;
    CUDA_RETURN_IF_ERROR(events.create());
    for (int k = 0; k < steps; ++k) {
      const bool blur = is_blur_step(steps_done_);
      double step_ms = 0.0;
      RETURN_IF_ERROR(
          time_persistent_step(events.start, events.stop, step_ms, clock_buffer.data()));
      RETURN_IF_ERROR(clock_buffer.download(clocks.data(), clocks.size(), stream_));
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      if (blur || phases > kMaxProfiledPhases) {
        blur_ms += step_ms;
        ++blur_steps;
        continue;
      }
      double inside = 0.0;
      for (int p = 0; p < phases; ++p) {
        const double ms = double(clocks[p + 1] - clocks[p]) / clock_khz;
        phase_ms[p] += ms;
        inside += ms;
      }
      outside_ms += step_ms - inside;
    }
    char barrier[160];
    std::snprintf(barrier, sizeof barrier,
                  "(not in the total: one empty grid barrier, %.2f us; SM clock %.0f MHz)",
                  barrier_us, clock_khz / 1e3);
    std::vector<std::pair<std::string, double>> out = {{barrier, 0.0}};
    for (int p = 0; p < phases; ++p) {
      const persistent::PhaseLog::Phase& ph = log.phases[p];
      out.emplace_back("phase " + std::to_string(p) + ": " + ph.what + " (" +
                           std::to_string(ph.items) + " items, " + std::to_string(ph.warp_items) +
                           " warp items)",
                       phase_ms[p]);
    }
    out.emplace_back("launch, exit, clock below peak (event time outside the phases)", outside_ms);
    out.emplace_back(std::to_string(blur_steps) + " blur step(s), whole", blur_ms);
    return out;
  }
  Status time_persistent_step(cudaEvent_t start, cudaEvent_t stop, double& step_ms,
                              unsigned long long* phase_clock) {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream_));
    RETURN_IF_ERROR(launch_persistent_steps(plan_, persistent_blocks_, steps_done_, 1, blur_every(),
                                            false, stream_, phase_clock, kMaxProfiledPhases + 1));
    CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream_));
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    step_ms = ms;
    ++steps_done_;
    return Status::Ok();
  }

  Status allocate_targets(const std::vector<SynthesisTarget>& targets) {
    int images = 0;
    for (const SynthesisTarget& t : targets) {
      auto* net = dynamic_cast<CudaResidentNetwork*>(t.network);
      if (net == nullptr) return invalid_argument("a synthesis target is not on the CUDA backend");
      const Network& n = net->network();
      if (n.in_c != 3) return invalid_argument("device synthesis needs RGB models");
      if (images == 0) {
        h_ = n.in_h, w_ = n.in_w;
      } else if (n.in_h != h_ || n.in_w != w_) {
        return invalid_argument("device synthesis targets must share one input size");
      }
      if (t.output < 0 || t.output >= n.num_outputs()) {
        return out_of_range("synthesis target output " + std::to_string(t.output) +
                            " outside the model's " + std::to_string(n.num_outputs()));
      }
      if (t.count <= 0 || t.initial_images.size() != std::size_t(t.count) * n.input_size()) {
        return invalid_argument("synthesis target images do not match count x input size");
      }
      TargetBuffers b;
      b.net = net;
      b.count = t.count;
      b.first_image = images;
      images += t.count;
      std::int64_t widest = 0;
      b.activations.resize(n.layers.size());
      for (std::size_t l = 0; l < n.layers.size(); ++l) {
        const LayerParams& p = n.layers[l].params;
        RETURN_IF_ERROR(b.activations[l].allocate(t.count * p.out_size()));
        widest = std::max({widest, p.in_size(), p.out_size()});
      }
      RETURN_IF_ERROR(b.grad_a.allocate(t.count * widest));
      RETURN_IF_ERROR(b.grad_b.allocate(t.count * widest));
      std::vector<float> seed(std::size_t(t.count) * n.num_outputs(), 0.0f);
      for (int i = 0; i < t.count; ++i) {
        seed[std::size_t(i) * n.num_outputs() + t.output] = static_cast<float>(t.sign);
      }
      RETURN_IF_ERROR(b.seed.allocate(seed.size()));
      RETURN_IF_ERROR(b.seed.upload(seed.data(), seed.size(), stream_));
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // `seed` is freed next
      targets_.push_back(std::move(b));
    }
    const std::int64_t size = std::int64_t{h_} * w_ * 3;
    RETURN_IF_ERROR(input_.allocate(images * size));
    RETURN_IF_ERROR(d_input_.allocate(images * size));
    return Status::Ok();
  }

  // Device pointers of target b's layer l, forward and backward.
  OpTask forward_task(TargetBuffers& b, std::size_t l) {
    const std::int64_t size = std::int64_t{h_} * w_ * 3;
    OpTask t{};
    t.p = b.net->network().layers[l].params;
    t.n = b.count;
    t.in = l == 0 ? input_.data() + b.first_image * size : b.activations[l - 1].data();
    t.w = b.net->custom_runner()->weights(l);
    t.bias = b.net->custom_runner()->bias(l);
    t.out = b.activations[l].data();
    return t;
  }
  // Backward iteration j = L-1-l reads the seed (j == 0) or the buffer iteration j-1 wrote.
  const float* backward_source(TargetBuffers& b, std::size_t l) {
    const std::size_t last = b.activations.size() - 1, j = last - l;
    if (j == 0) return b.seed.data();
    return (j - 1) % 2 == 0 ? b.grad_a.data() : b.grad_b.data();
  }
  float* backward_target(TargetBuffers& b, std::size_t l) {
    const std::int64_t size = std::int64_t{h_} * w_ * 3;
    if (l == 0) return d_input_.data() + b.first_image * size;
    const std::size_t j = b.activations.size() - 1 - l;
    return j % 2 == 0 ? b.grad_a.data() : b.grad_b.data();
  }
  OpTask backward_task(TargetBuffers& b, std::size_t l) {
    OpTask t = forward_task(b, l);
    t.in = backward_source(b, l);
    t.aux = t.p.relu ? b.activations[l].data() : nullptr;
    t.bias = nullptr;
    t.out = backward_target(b, l);
    return t;
  }

  // Custom-kernel targets grouped by their sequence of layer kinds.
  Status build_groups() {
    std::map<std::vector<int>, std::vector<int>> by_signature;
    for (std::size_t i = 0; i < targets_.size(); ++i) {
      if (targets_[i].net->custom_runner() == nullptr) {
        solo_.push_back(static_cast<int>(i));
        continue;
      }
      std::vector<int> signature;
      for (const auto& layer : targets_[i].net->network().layers) {
        signature.push_back(static_cast<int>(layer.params.kind));
      }
      by_signature[signature].push_back(static_cast<int>(i));
    }
    for (auto& [signature, members] : by_signature) {
      Group g;
      g.targets = members;
      g.forward.resize(signature.size());
      g.backward.resize(signature.size());
      for (std::size_t l = 0; l < signature.size(); ++l) {
        std::vector<OpTask> fwd, bwd;
        for (int t : members) {
          fwd.push_back(forward_task(targets_[t], l));
          bwd.push_back(backward_task(targets_[t], l));
        }
        RETURN_IF_ERROR(g.forward[l].prepare(Pass::kForward, std::move(fwd), stream_));
        RETURN_IF_ERROR(g.backward[l].prepare(Pass::kBackward, std::move(bwd), stream_));
      }
      groups_.push_back(std::move(g));
    }
    return Status::Ok();
  }

  Status upload_state(const std::vector<SynthesisTarget>& targets) {
    const int n = targets_.back().first_image + targets_.back().count;
    const std::int64_t size = std::int64_t{h_} * w_ * 3;
    std::vector<double> x;
    x.reserve(n * size);
    std::vector<double> best_value;
    std::vector<ImageSlot> slots;
    for (std::size_t t = 0; t < targets.size(); ++t) {
      const SynthesisTarget& target = targets[t];
      const TargetBuffers& b = targets_[t];
      x.insert(x.end(), target.initial_images.begin(), target.initial_images.end());
      const std::int64_t outputs = b.net->network().num_outputs();
      for (int i = 0; i < target.count; ++i) {
        best_value.push_back(target.initial_best);
        ImageSlot s{};
        s.gradient = d_input_.data() + (b.first_image + i) * size;
        s.input = input_.data() + (b.first_image + i) * size;
        s.outputs = b.activations.back().data() + i * outputs;
        s.output = target.output;
        s.sign = target.sign;
        slots.push_back(s);
      }
    }
    RETURN_IF_ERROR(x_.allocate(x.size()));
    RETURN_IF_ERROR(x_.upload(x.data(), x.size(), stream_));
    RETURN_IF_ERROR(best_.allocate(x.size()));
    RETURN_IF_ERROR(best_.upload(x.data(), x.size(), stream_));
    RETURN_IF_ERROR(scratch_.allocate(x.size()));
    RETURN_IF_ERROR(partials_.allocate(std::size_t(n) * bands(h_)));
    RETURN_IF_ERROR(rgb8_.allocate(x.size()));
    RETURN_IF_ERROR(best_value_.allocate(n));
    RETURN_IF_ERROR(best_value_.upload(best_value.data(), n, stream_));
    std::vector<double> nan(n, std::nan(""));
    RETURN_IF_ERROR(best_response_.allocate(n));
    RETURN_IF_ERROR(best_response_.upload(nan.data(), n, stream_));
    std::vector<int> zeros(n, 0);
    RETURN_IF_ERROR(improved_.allocate(n));
    RETURN_IF_ERROR(improved_.upload(zeros.data(), n, stream_));
    RETURN_IF_ERROR(has_best_.allocate(n));
    RETURN_IF_ERROR(has_best_.upload(zeros.data(), n, stream_));
    RETURN_IF_ERROR(slots_.allocate(slots.size()));
    RETURN_IF_ERROR(slots_.upload(slots.data(), slots.size(), stream_));
    state_.n = n;
    state_.h = h_;
    state_.w = w_;
    state_.slots = slots_.data();
    state_.x = x_.data();
    state_.best = best_.data();
    state_.scratch = scratch_.data();
    state_.best_value = best_value_.data();
    state_.best_response = best_response_.data();
    state_.improved = improved_.data();
    state_.has_best = has_best_.data();
    state_.partials = partials_.data();
    RETURN_IF_ERROR(launch_write_input(state_, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // host vectors are freed next
    return Status::Ok();
  }

  // While profiling: an event after each launch, labelled with what ran before it.
  void mark(const std::string& label) {
    if (marks_ == nullptr) return;
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) return;
    cudaEventRecord(e, stream_);
    marks_->emplace_back(label, e);
  }

  Status enqueue_forward() {
    for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
      Group& g = groups_[gi];
      for (std::size_t l = 0; l < g.forward.size(); ++l) {
        RETURN_IF_ERROR(g.forward[l].launch(stream_));
        mark("group " + std::to_string(gi) + " forward L" + std::to_string(l) + " " +
             g.forward[l].kernel_name());
      }
    }
    const std::int64_t size = std::int64_t{h_} * w_ * 3;
    for (int t : solo_) {
      TargetBuffers& b = targets_[t];
      const float* in = input_.data() + b.first_image * size;
      for (std::size_t l = 0; l < b.activations.size(); ++l) {
        RETURN_IF_ERROR(b.net->runner().forward(l, b.count, in, b.activations[l].data(), stream_));
        mark("cuDNN forward L" + std::to_string(l));
        in = b.activations[l].data();
      }
    }
    return Status::Ok();
  }

  Status enqueue_backward() {
    for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
      Group& g = groups_[gi];
      for (std::size_t l = g.backward.size(); l-- > 0;) {
        RETURN_IF_ERROR(g.backward[l].launch(stream_));
        mark("group " + std::to_string(gi) + " backward L" + std::to_string(l) + " " +
             g.backward[l].kernel_name());
      }
    }
    for (int t : solo_) {
      TargetBuffers& b = targets_[t];
      for (std::size_t l = b.activations.size(); l-- > 0;) {
        RETURN_IF_ERROR(b.net->runner().backward(l, b.count, backward_source(b, l),
                                                 b.activations[l].data(), backward_target(b, l),
                                                 stream_));
        mark("cuDNN backward L" + std::to_string(l));
      }
    }
    return Status::Ok();
  }

  Status enqueue_evaluation(bool record) {
    RETURN_IF_ERROR(enqueue_forward());
    if (record) {
      RETURN_IF_ERROR(launch_record(state_, stream_));
      mark("record best");
    }
    return enqueue_backward();
  }

  Status enqueue_step(bool blur) {
    RETURN_IF_ERROR(launch_update(state_, step_, stream_));
    mark("update (RMS, blur, step, clip)");
    RETURN_IF_ERROR(enqueue_forward());
    RETURN_IF_ERROR(launch_record(state_, stream_));
    mark("record best");
    if (!blur) return enqueue_backward();
    // The gradient of the evaluated image would be replaced at once: skip it, blur, evaluate.
    RETURN_IF_ERROR(launch_blur_images(state_, image_blur_, stream_));
    mark("blur images");
    return enqueue_evaluation(false);
  }

  StatusOr<cudaGraphExec_t> capture(bool blur) {
    CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    const Status enqueued = enqueue_step(blur);
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (!enqueued.ok()) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      return enqueued;
    }
    CUDA_RETURN_IF_ERROR(ended);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_RETURN_IF_ERROR(made);
    return exec;
  }

  void capture_graphs() {
    if (!solo_.empty()) {
      // cuDNN's scratch buffers belong to its runner and grow with the batch of any later call;
      // a graph would keep pointers to freed memory.
      capture_error_ = "not attempted for cuDNN targets";
      return;
    }
    auto step = capture(false);
    auto blur = step.ok() ? capture(true) : StatusOr<cudaGraphExec_t>(step.status());
    if (step.ok() && blur.ok()) {
      step_graph_ = *step;
      blur_graph_ = *blur;
      graphs_ = true;
      return;
    }
    if (step.ok()) cudaGraphExecDestroy(*step);
    capture_error_ = "capture failed: " + (step.ok() ? blur.status() : step.status()).message();
    cudaGetLastError();  // a failed capture leaves a sticky launch error behind
  }

  Cowley2026Settings settings_;
  StepSettings step_;
  BlurTaps image_blur_;
  cudaStream_t stream_ = nullptr;
  int h_ = 0, w_ = 0;
  std::vector<TargetBuffers> targets_;
  std::vector<Group> groups_;
  std::vector<int> solo_;  // targets on cuDNN
  DeviceBuffer<float> input_, d_input_;
  DeviceBuffer<double> x_, best_, scratch_, best_value_, best_response_, partials_;
  DeviceBuffer<int> improved_, has_best_;
  DeviceBuffer<ImageSlot> slots_;
  DeviceBuffer<std::uint8_t> rgb8_;
  ImageState state_;
  int steps_done_ = 0;
  bool graphs_ = false;
  std::string capture_error_;
  cudaGraphExec_t step_graph_ = nullptr, blur_graph_ = nullptr;
  bool persistent_ = false;
  int persistent_blocks_ = 0;
  std::string persistent_note_;  // why the persistent step was requested but not used
  persistent::Plan plan_;
  DeviceBuffer<persistent::PlanLayer> plan_table_;
  DeviceBuffer<double> row_sums_;
  std::vector<std::pair<std::string, cudaEvent_t>>* marks_ = nullptr;  // set while profiling
};

}  // namespace

StatusOr<std::unique_ptr<DeviceSynthesis>> start_device_cowley2026(
    const Cowley2026Settings& settings, const std::vector<SynthesisTarget>& targets) {
  auto synthesis = std::make_unique<CudaSynthesis>();
  RETURN_IF_ERROR(synthesis->init(settings, targets));
  return std::unique_ptr<DeviceSynthesis>(std::move(synthesis));
}

}  // namespace stimloop::cuda
