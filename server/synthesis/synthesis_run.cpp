#include "server/synthesis/synthesis_run.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "server/synthesis/penalties.h"

namespace stimloop::synthesis {
namespace {

constexpr double kNoBest = -std::numeric_limits<double>::infinity();

// Rolls an image circularly by (dy, dx): out[y, x] = in[y - dy, x - dx].
void roll(std::span<const double> in, const ImageShape& s, int dy, int dx, std::span<double> out) {
  for (int y = 0; y < s.h; ++y) {
    const int sy = ((y - dy) % s.h + s.h) % s.h;
    for (int x = 0; x < s.w; ++x) {
      const int sx = ((x - dx) % s.w + s.w) % s.w;
      for (int c = 0; c < s.c; ++c) {
        out[(std::int64_t{y} * s.w + x) * s.c + c] = in[(std::int64_t{sy} * s.w + sx) * s.c + c];
      }
    }
  }
}

}  // namespace

const char* to_string(StopReason reason) {
  switch (reason) {
    case StopReason::kCompleted:
      return "COMPLETED";
    case StopReason::kDeadline:
      return "DEADLINE";
    case StopReason::kCancelled:
      return "CANCELLED";
  }
  return "?";
}

StatusOr<StopReason> parse_stop_reason(const std::string& s) {
  for (auto r : {StopReason::kCompleted, StopReason::kDeadline, StopReason::kCancelled}) {
    if (s == to_string(r)) return r;
  }
  return invalid_argument("unknown stop reason '" + s + "'");
}

StatusOr<std::unique_ptr<SynthesisRun>> SynthesisRun::create(
    const SynthesisRequest& request, std::array<float, 3> means, Backend& backend,
    std::shared_ptr<const Network> model_network, ResidentNetwork* resident,
    bool allow_device_loop) {
  RETURN_IF_ERROR(validate(request));
  auto run = std::unique_ptr<SynthesisRun>(new SynthesisRun());
  run->request_ = request;
  ASSIGN_OR_RETURN(run->setup_, make_objective(request, model_network));
  if (run->setup_.network == model_network && resident != nullptr) {
    run->net_ = resident;
  } else {
    ASSIGN_OR_RETURN(run->owned_net_, backend.upload(run->setup_.network));
    run->net_ = run->owned_net_.get();
  }
  const Network& net = *model_network;
  if (net.in_c != 3) return invalid_argument("synthesis needs an RGB (3-channel) model");

  BatchState& s = run->state_;
  s.shape = {net.in_h, net.in_w, 3};
  s.n = request.count;
  s.means = means;
  const std::int64_t size = s.shape.size();
  s.x.resize(s.n * size);
  for (int i = 0; i < s.n; ++i) s.rngs.emplace_back(request.seed + static_cast<std::uint64_t>(i));
  if (request.init == InitKind::kImage && request.init_pixels.size() != std::size_t(size)) {
    return invalid_argument("--init image has " + std::to_string(request.init_pixels.size()) +
                            " values; the model takes " + std::to_string(net.in_h) + "x" +
                            std::to_string(net.in_w) + "x3");
  }
  for (int i = 0; i < s.n; ++i) {
    auto img = s.image(i);
    for (std::int64_t j = 0; j < size; ++j) {
      double raw = 128.0;
      if (request.init == InitKind::kNoise) raw = s.rngs[i].uniform() * 50.0 + 128.0;
      if (request.init == InitKind::kImage) raw = request.init_pixels[j];
      img[j] = raw - means[j % 3];
    }
    if (request.grayscale) to_grayscale(img, means);
  }
  s.x0 = s.x;
  run->method_ = make_method(request, s.shape, s.n);
  run->best_value_.assign(s.n, kNoBest);
  run->best_response_.assign(s.n, std::numeric_limits<double>::quiet_NaN());
  run->has_best_.assign(s.n, false);
  run->best_images_ = s.x;
  run->trajectory_.resize(s.n);
  // Room for every point the run records (up to a bound: a million steps a point each would
  // reserve 16 MB a stimulus), so that recording one does not allocate inside a step.
  const int points = std::min(request.steps / std::max(request.trajectory_every, 1) + 1, 4096);
  for (auto& trajectory : run->trajectory_) trajectory.reserve(points);
  if (request.method == MethodKind::kCowley2026 && request.objective == ObjectiveKind::kMax) {
    run->best_value_.assign(s.n, 0.0);  // the authors' best-so-far starts at 0 when maximising
  } else if (request.method == MethodKind::kCowley2026 &&
             request.objective == ObjectiveKind::kMin) {
    run->best_value_.assign(s.n, -1e5);  // ... and at 1e5 when minimising
  }
  if (allow_device_loop) run->try_device_loop(backend);
  run->started_ = std::chrono::steady_clock::now();
  return run;
}

void SynthesisRun::try_device_loop(Backend& backend) {
  const SynthesisRequest& r = request_;
  const bool single_output =
      r.objective == ObjectiveKind::kMax || r.objective == ObjectiveKind::kMin;
  if (r.method != MethodKind::kCowley2026 || !single_output || has_penalties(r)) return;
  const Cowley2026Settings settings = cowley2026_settings(r, state_.means);
  SynthesisTarget target;
  target.network = net_;
  target.output = r.output_index;
  target.sign = r.objective == ObjectiveKind::kMax ? 1.0 : -1.0;
  target.initial_best = best_value_[0];
  target.count = state_.n;
  target.initial_images = state_.x;
  // UNIMPLEMENTED (a backend without a device loop) or any failure to start: the host loop.
  auto device = backend.start_cowley2026(settings, {target});
  if (device.ok()) device_ = std::move(*device);
}

Status SynthesisRun::device_step() {
  RETURN_IF_ERROR(device_->run(1));
  std::vector<std::uint8_t> has_best;
  RETURN_IF_ERROR(device_->best(best_value_, best_response_, has_best));
  for (int i = 0; i < state_.n; ++i) has_best_[i] = has_best[i] != 0;
  return Status::Ok();
}

StatusOr<std::vector<std::vector<std::uint8_t>>> SynthesisRun::device_pixels() const {
  std::vector<std::uint8_t> all;
  RETURN_IF_ERROR(device_->best_rgb8(all));
  const std::size_t size = state_.shape.size();
  std::vector<std::vector<std::uint8_t>> pixels;
  for (int i = 0; i < state_.n; ++i) {
    pixels.emplace_back(all.begin() + i * size, all.begin() + (i + 1) * size);
  }
  return pixels;
}

Status SynthesisRun::evaluate(std::span<const double> images, bool with_penalties) {
  const int n = state_.n;
  const Network& net = net_->network();
  input_.assign(images.begin(), images.end());
  outputs_.resize(std::size_t(n) * net.num_outputs());
  d_input_.resize(input_.size());
  values_.resize(n);
  const Objective& objective = *setup_.objective;
  RETURN_IF_ERROR(net_->vector_jacobian(
      input_, n,
      [&](int first, int count, std::span<const float> out, std::span<float> seed) {
        objective.evaluate(out, count, std::span(values_).subspan(first, count), seed);
      },
      outputs_, d_input_));
  gradient_.assign(d_input_.begin(), d_input_.end());
  if (with_penalties && has_penalties(request_)) {
    apply_penalties(request_, state_, values_, gradient_);
  }
  return Status::Ok();
}

void SynthesisRun::record_best() {
  const std::int64_t size = state_.shape.size();
  const std::int64_t outputs = net_->network().num_outputs();
  for (int i = 0; i < state_.n; ++i) {
    if (values_[i] > best_value_[i]) {
      best_value_[i] = values_[i];
      has_best_[i] = true;
      best_response_[i] = setup_.objective->response(
          std::span<const float>(outputs_).subspan(i * outputs, outputs));
      std::copy_n(state_.x.begin() + i * size, size, best_images_.begin() + i * size);
    }
  }
}

Status SynthesisRun::step() {
  if (done()) return Status::Ok();
  if (device_) {
    RETURN_IF_ERROR(device_step());
    ++steps_done_;
    if (steps_done_ % request_.trajectory_every == 0 || done()) {
      for (int i = 0; i < state_.n; ++i)
        trajectory_[i].emplace_back(steps_done_, best_response_[i]);
    }
    return Status::Ok();
  }
  const int t = steps_done_;
  const std::int64_t size = state_.shape.size();
  BatchState& s = state_;

  // The gradient for this step: at x, or at jittered copies of it.
  auto& shifts = shifts_;
  shifts.resize(s.n);
  bool jittered = false;
  for (int i = 0; i < s.n; ++i) {
    shifts[i] = method_->jitter(t, i, s);
    jittered |= shifts[i] != std::pair<int, int>{0, 0};
  }
  if (jittered) {
    if (t == 0 && method_->initial_image_is_candidate()) {
      RETURN_IF_ERROR(evaluate(s.x, true));
      record_best();
    }
    shifted_.resize(s.x.size());
    for (int i = 0; i < s.n; ++i) {
      roll(std::span<const double>(s.x).subspan(i * size, size), s.shape, shifts[i].first,
           shifts[i].second, std::span(shifted_).subspan(i * size, size));
    }
    // The model's gradient at the shifted images, rolled back; the penalties belong to the
    // unshifted images, so they are added after the roll.
    RETURN_IF_ERROR(evaluate(shifted_, false));
    rolled_.resize(size);
    for (int i = 0; i < s.n; ++i) {
      auto g = std::span(gradient_).subspan(i * size, size);
      roll(g, s.shape, -shifts[i].first, -shifts[i].second, rolled_);
      std::copy(rolled_.begin(), rolled_.end(), g.begin());
    }
    if (has_penalties(request_)) apply_penalties(request_, state_, values_, gradient_);
  } else if (!gradient_valid_) {
    RETURN_IF_ERROR(evaluate(s.x, true));
    if (t == 0 && method_->initial_image_is_candidate()) record_best();
  }

  method_->update(t, s, gradient_);
  // Evaluating the new images also yields the next step's gradient at them (one pass per step).
  RETURN_IF_ERROR(evaluate(s.x, true));
  gradient_valid_ = true;
  record_best();
  ++steps_done_;
  if (steps_done_ % request_.trajectory_every == 0 || done()) {
    for (int i = 0; i < s.n; ++i) trajectory_[i].emplace_back(steps_done_, best_response_[i]);
  }
  if (method_->after_evaluation(t, s)) gradient_valid_ = false;
  return Status::Ok();
}

ProgressEvent SynthesisRun::progress() const {
  return {steps_done_, request_.steps, best_response_};
}

std::vector<std::vector<std::uint8_t>> SynthesisRun::snapshot_pixels() const {
  if (device_) {
    auto pixels = device_pixels();
    if (pixels.ok()) return std::move(*pixels);
    return {};  // a snapshot is best-effort; the final result reports device errors
  }
  const BatchState& s = state_;
  const std::int64_t size = s.shape.size();
  std::vector<std::vector<std::uint8_t>> pixels;
  for (int i = 0; i < s.n; ++i) {
    const double* source = has_best_[i] ? best_images_.data() + i * size : s.x.data() + i * size;
    pixels.push_back(method_->to_rgb8(s, i, std::span<const double>(source, size)));
  }
  return pixels;
}

StatusOr<SynthesisResult> SynthesisRun::finish(StopReason reason) {
  const BatchState& s = state_;
  const std::int64_t size = s.shape.size();
  SynthesisResult result;
  result.steps_done = steps_done_;
  result.stop_reason = reason;
  // The 8-bit images, evaluated as the rig will show them.
  std::vector<double> images(s.x.size());
  std::vector<std::vector<std::uint8_t>> device_images;
  if (device_) {
    ASSIGN_OR_RETURN(device_images, device_pixels());
  }
  for (int i = 0; i < s.n; ++i) {
    Stimulus st;
    st.index = i;
    st.seed = request_.seed + static_cast<std::uint64_t>(i);
    // No candidate ever beat the authors' starting best (or no step ran): the current image.
    const double* source = has_best_[i] ? best_images_.data() + i * size : s.x.data() + i * size;
    st.pixels = device_ ? std::move(device_images[i])
                        : method_->to_rgb8(s, i, std::span<const double>(source, size));
    st.best_objective_float = has_best_[i] ? best_value_[i] : kNoBest;
    st.trajectory = trajectory_[i];
    // A run stopped early (deadline, cancellation) still ends its trajectory at steps_done.
    if (steps_done_ > 0 && (st.trajectory.empty() || st.trajectory.back().first != steps_done_)) {
      st.trajectory.emplace_back(steps_done_, best_response_[i]);
    }
    dequantize(st.pixels, s.means, std::span(images).subspan(i * size, size));
    result.stimuli.push_back(std::move(st));
  }
  const std::int64_t outputs = net_->network().num_outputs();
  std::vector<float> input(images.begin(), images.end()), out(std::size_t(s.n) * outputs);
  RETURN_IF_ERROR(net_->forward(input, s.n, out));
  std::vector<double> values(s.n);
  std::vector<float> seed(out.size());
  setup_.objective->evaluate(out, s.n, values, seed);
  for (int i = 0; i < s.n; ++i) {
    Stimulus& st = result.stimuli[i];
    const auto row = std::span<const float>(out).subspan(i * outputs, outputs);
    st.outputs.assign(row.begin(), row.end());
    st.response = setup_.objective->response(row);
    st.objective = values[i];
  }
  result.wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_)
          .count();
  return result;
}

void StepTimer::record(double seconds, bool first_step) {
  if (first_step) {
    first_step_s_ = seconds;
    return;
  }
  recent_s_.push_back(seconds);
  if (recent_s_.size() > 5) recent_s_.erase(recent_s_.begin());
}

double StepTimer::estimate_s() const {
  if (recent_s_.empty()) return first_step_s_;
  return *std::max_element(recent_s_.begin(), recent_s_.end());
}

bool StepTimer::out_of_time(Clock::time_point now, Clock::time_point deadline) const {
  return now >= latest_start(deadline);
}

StepTimer::Clock::time_point StepTimer::latest_start(Clock::time_point deadline) const {
  // Room for one more step (with a 20 % margin), the final 8-bit evaluation (a forward pass:
  // about half a step), and a fixed allowance for encoding the result and its trip back to the
  // client: with fast steps (a millisecond or two) the proportional margin alone is too thin for
  // a client whose own gRPC deadline ends the call.
  const auto needed = std::chrono::duration<double>(1.7 * estimate_s() + kDeliveryAllowanceS);
  return deadline - std::chrono::duration_cast<Clock::duration>(needed);
}

StatusOr<SynthesisResult> run_synthesis(SynthesisRun& run, const RunControl& control) {
  using Clock = std::chrono::steady_clock;
  StepTimer timer;
  StopReason reason = StopReason::kCompleted;
  while (!run.done()) {
    if (control.cancelled != nullptr && control.cancelled->load()) {
      reason = StopReason::kCancelled;
      break;
    }
    if (control.deadline && timer.out_of_time(Clock::now(), *control.deadline)) {
      reason = StopReason::kDeadline;
      break;
    }
    const auto t0 = Clock::now();
    const bool first = run.steps_done() == 0;
    RETURN_IF_ERROR(run.step());
    timer.record(std::chrono::duration<double>(Clock::now() - t0).count(), first);
    if (control.on_progress && (run.steps_done() % control.progress_every == 0 || run.done())) {
      control.on_progress(run.progress());
    }
  }
  return run.finish(reason);
}

}  // namespace stimloop::synthesis
