// One synthesis run: a batch of `count` stimuli (seeds seed, seed+1, ...) for one model, advanced
// one step at a time so that a scheduler can interleave runs, stop at a deadline or on
// cancellation between steps, and still return the best stimuli reached. No gRPC and no CUDA
// here: the run talks to a ResidentNetwork of whatever backend it was given.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "kernels/backend.h"
#include "server/synthesis/method.h"
#include "server/synthesis/objective.h"

namespace stimloop::synthesis {

enum class StopReason { kCompleted, kDeadline, kCancelled };
const char* to_string(StopReason reason);
StatusOr<StopReason> parse_stop_reason(const std::string& s);

struct Stimulus {
  int index = 0;                      // position in the batch
  std::uint64_t seed = 0;             // request.seed + index
  std::vector<std::uint8_t> pixels;   // h x w x 3, RGB: what the rig shows
  std::vector<float> outputs;         // network outputs for the 8-bit image
  double response = 0.0;              // Objective::response of the 8-bit image
  double objective = 0.0;             // objective of the 8-bit image (without penalties)
  double best_objective_float = 0.0;  // best (penalised) objective while optimising
  std::vector<std::pair<int, double>> trajectory;  // (steps done, best response so far)
};

struct SynthesisResult {
  std::vector<Stimulus> stimuli;
  int steps_done = 0;
  StopReason stop_reason = StopReason::kCompleted;
  double wall_ms = 0.0;
};

struct ProgressEvent {
  int steps_done = 0;
  int steps = 0;
  std::vector<double> best_response;  // per stimulus
};

class SynthesisRun {
 public:
  // `backend` holds the networks; when `resident` is given it must be `model_network` uploaded
  // to that backend (saves a second upload). The channel objective uploads its own prefix.
  // Preferred and suppressive cowley2026 runs (max/min of one output, no penalties) go to the
  // backend's device loop when it has one (kernels/device_synthesis.h): every step on the GPU,
  // only the best values read back per step. `allow_device_loop = false` keeps the host loop
  // (the reference the device loop is tested against).
  static StatusOr<std::unique_ptr<SynthesisRun>> create(
      const SynthesisRequest& request, std::array<float, 3> channel_means, Backend& backend,
      std::shared_ptr<const Network> model_network, ResidentNetwork* resident = nullptr,
      bool allow_device_loop = true);

  Status step();  // one step for the whole batch; no-op once all steps are done
  int steps_done() const { return steps_done_; }
  bool done() const { return steps_done_ >= request_.steps; }
  ProgressEvent progress() const;
  // The best images so far as the 8-bit images they would become (no evaluation), for snapshots.
  std::vector<std::vector<std::uint8_t>> snapshot_pixels() const;
  const SynthesisRequest& request() const { return request_; }
  const std::string& description() const { return setup_.description; }
  // Whether the steps run in the backend's device loop.
  bool on_device() const { return device_ != nullptr; }

  // Quantizes each stimulus's best image to 8 bits and evaluates the 8-bit image.
  StatusOr<SynthesisResult> finish(StopReason reason);

 private:
  SynthesisRun() = default;
  // Fills outputs_, values_ and gradient_ (d objective / d images) for the batch, with the
  // penalties of state_.x added when asked.
  Status evaluate(std::span<const double> images, bool with_penalties);
  void record_best();
  // Starts the device loop when the request and the backend allow it; the host loop otherwise.
  void try_device_loop(Backend& backend);
  Status device_step();
  // The device loop's 8-bit best (or current) images, one vector per stimulus.
  StatusOr<std::vector<std::vector<std::uint8_t>>> device_pixels() const;

  SynthesisRequest request_;
  ObjectiveSetup setup_;
  std::unique_ptr<ResidentNetwork> owned_net_;
  ResidentNetwork* net_ = nullptr;
  std::unique_ptr<Method> method_;
  BatchState state_;
  int steps_done_ = 0;
  bool gradient_valid_ = false;
  std::chrono::steady_clock::time_point started_;

  // Scratch, reused every step.
  std::vector<float> input_, outputs_, d_input_;
  std::vector<double> values_, gradient_, shifted_, rolled_;
  std::vector<std::pair<int, int>> shifts_;  // this step's jitter per image

  std::vector<double> best_value_, best_response_;
  std::vector<bool> has_best_;
  std::vector<double> best_images_;
  std::vector<std::vector<std::pair<int, double>>> trajectory_;
  std::unique_ptr<DeviceSynthesis> device_;  // set when the steps run on the device
};

// When to stop for a deadline: a run stops when one more step (with a margin) and the final 8-bit
// evaluation no longer fit. The estimate is the slowest of the last few steps; the first step is
// left out once others exist (it evaluates twice and warms caches up), or a rig with a 250 ms
// deadline would give up after a handful of steps. Shared by run_synthesis and the server's engine,
// which interleaves steps of many runs.
class StepTimer {
 public:
  using Clock = std::chrono::steady_clock;
  void record(double seconds, bool first_step);
  // A step time known from earlier runs of the same model, so that a run's very first step is
  // not taken blind when it starts close to its deadline (a rig that waited in the queue).
  void prime(double seconds) { recent_s_.push_back(seconds); }
  // No step timed yet: only a deadline already passed stops the run.
  bool out_of_time(Clock::time_point now, Clock::time_point deadline) const;
  // The last moment a step may start and still end, with the final evaluation, by `deadline`
  // (out_of_time is true from then on).
  Clock::time_point latest_start(Clock::time_point deadline) const;
  double estimate_s() const;
  // Kept free before the deadline for the final encoding and delivery of the stimuli.
  static constexpr double kDeliveryAllowanceS = 0.010;

 private:
  std::vector<double> recent_s_;
  double first_step_s_ = 0.0;
};

struct RunControl {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  const std::atomic<bool>* cancelled = nullptr;
  std::function<void(const ProgressEvent&)> on_progress;  // called every progress_every steps
  int progress_every = 10;
};

// Steps until done, the deadline (leaving time for one more step and the final evaluation) or
// cancellation, then finishes.
StatusOr<SynthesisResult> run_synthesis(SynthesisRun& run, const RunControl& control);

}  // namespace stimloop::synthesis
