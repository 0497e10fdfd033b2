// A synthesis request as an engine job: one SynthesisRun advanced one step per slice. Before
// each step it checks cancellation and the deadline (leaving room for one more step and the final
// evaluation), so a rig gets the best stimulus reached in time, with stop reason DEADLINE. Events
// go to a sink that must not block: the gRPC layer queues them and may drop snapshots for a slow
// reader, never stimuli.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "server/engine/job.h"
#include "server/engine/model_registry.h"
#include "server/engine/stimulus_output.h"
#include "server/synthesis/synthesis_run.h"

namespace stimloop::engine {

struct SynthesisSummary {
  int steps_done = 0;
  int steps = 0;
  synthesis::StopReason stop_reason = synthesis::StopReason::kCompleted;
  double queue_ms = 0.0;  // acceptance to first step
  double wall_ms = 0.0;   // acceptance to the end
};

class SynthesisSink {
 public:
  virtual ~SynthesisSink() = default;
  virtual void on_progress(const synthesis::ProgressEvent& progress) = 0;
  virtual void on_snapshot(const synthesis::ProgressEvent& progress,
                           std::vector<std::vector<std::uint8_t>> pixels) = 0;
  virtual void on_stimulus(const SynthesisOutput& output) = 0;
  // Exactly one of on_done / on_error ends every job.
  virtual void on_done(const SynthesisSummary& summary) = 0;
  virtual void on_error(const Status& status) = 0;
};

// Recent step times per model and batch size, remembered across runs (see StepTimer::prime).
class StepTimeBook {
 public:
  std::optional<double> lookup(const std::string& model, int count) const;
  void update(const std::string& model, int count, double seconds);

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, double> seconds_;
};

struct SynthesizeOptions {
  int progress_every = 10;
  int snapshot_every = 0;   // 0: none
  std::string results_dir;  // non-empty: every stimulus's PNG and record are also written here
  std::shared_ptr<StepTimeBook> step_times;  // optional
  // > 0: a batch of more seeds than this runs as parts of at most this many seeds, one part's
  // step per slice, so that more urgent work waits at most a part-step, not a whole-batch step.
  // Seeds evolve independently (without a diversity penalty), so the stimuli are the same.
  int max_images_per_slice = 0;
  // A job that ends (deadline, cancel) before its first step still delivers its starting image,
  // 0 steps done, instead of no stimulus: for callers that need one stimulus per job, such as a
  // session block whose slots must all be filled.
  bool always_deliver = false;
};

class SynthesizeJob : public Job {
 public:
  SynthesizeJob(std::string request_id, Priority priority,
                std::optional<Clock::time_point> deadline, ResidentModelPtr model, Backend& backend,
                synthesis::SynthesisRequest request, SynthesizeOptions options,
                std::shared_ptr<SynthesisSink> sink);

  SliceResult run(std::vector<std::shared_ptr<Job>>& companions) override;
  void fail(const Status& status) override;
  // Ends the job at its next slice with CANCELLED and no output: no final evaluation, no
  // stimulus (cancel() instead delivers the best stimulus so far). For work whose result nobody
  // will use, such as a discarded prepared block, so it costs the engine nothing more.
  void abandon() {
    abandoned_.store(true);
    cancel();
  }
  // The last moment the next step may start and still end, with the final evaluation, by the
  // deadline: a job still queued then stops, with the best stimulus so far (or none yet).
  std::optional<Clock::time_point> expiry() const override;
  bool expire() override;

 private:
  int part_size() const;  // seeds stepped together (see max_images_per_slice)
  Status create_parts();
  SliceResult finish(synthesis::StopReason reason);
  // Ends a job that never took a step: DONE with no stimulus.
  SliceResult end_unstarted(synthesis::StopReason reason);
  // Ends the job now: finish() once it has parts (or must deliver anyway), else end_unstarted().
  SliceResult end_now(synthesis::StopReason reason);
  SynthesisSummary summary(int steps_done, synthesis::StopReason reason) const;
  // Writes the stimulus to the results directory, if any; an error names what failed.
  Status save(const SynthesisOutput& output);
  int min_steps_done() const;
  synthesis::ProgressEvent progress() const;

  ResidentModelPtr model_;
  Backend& backend_;
  synthesis::SynthesisRequest request_;
  SynthesizeOptions options_;
  std::shared_ptr<SynthesisSink> sink_;
  struct Part {
    std::unique_ptr<synthesis::SynthesisRun> run;
    int first = 0;  // index of its first stimulus in the whole batch
  };
  std::vector<Part> parts_;
  std::size_t next_part_ = 0;
  int reported_steps_ = 0;
  synthesis::StepTimer timer_;
  bool ended_ = false;
  std::atomic<bool> abandoned_{false};
  bool expired_ = false;     // the timer found it queued past expiry(): its next slice ends it
  int save_generation_ = 0;  // see save_stimulus
};

}  // namespace stimloop::engine
