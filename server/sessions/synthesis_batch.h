// The SYNTHESIZE stimuli of a block as engine jobs, in two steps: plan (what each job runs:
// seed, target channel, synthesis parameters) and start/collect. Splitting them lets a block's
// syntheses start before the block is asked for (prepared ahead, below rig work) and be collected
// when it is: a prepared batch is used only if its plan equals the plan of the block asked for,
// so a prepared stimulus is exactly the one a fresh run would make, only with more steps done.
#pragma once

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/engine/engine.h"
#include "server/engine/model_registry.h"
#include "server/engine/synthesize_job.h"
#include "server/sessions/block_item.h"
#include "server/sessions/session_manager.h"

namespace stimloop::sessions {

struct SynthesisPlan {
  int block_index = 0;
  int first_position = 0;  // of the first stimulus in the block
  std::vector<int> channels;
  std::vector<synthesis::SynthesisRequest> requests;  // one per stimulus; output_index set
  // Equal keys mean equal jobs (the deadline is not part of it).
  std::string key() const;
};

// The plan of `count` synthesized stimuli at `first_position` of block `block_index`: stimulus j
// targets channel (block_index + first_position + j) mod channel_count and uses seed + position.
StatusOr<SynthesisPlan> plan_syntheses(const BlockRequest& request, int block_index,
                                       int first_position, int count, std::uint64_t seed,
                                       int channel_count);

struct BatchTarget {
  engine::ResidentModelPtr model;  // the session model the jobs run on
  std::string model_id;
  int fit_version = 0;
  std::vector<std::string> channel_ids;  // in output order
};

class SynthesisBatch {
 public:
  // Submits one job per planned stimulus; each stops by itself at `deadline` when one is given.
  static StatusOr<std::unique_ptr<SynthesisBatch>> start(
      SynthesisPlan plan, BatchTarget target, engine::Priority priority,
      std::optional<engine::Clock::time_point> deadline, engine::Engine& engine, Backend& backend,
      std::shared_ptr<engine::StepTimeBook> step_times, const std::string& request_id);
  ~SynthesisBatch();  // abandons jobs still running (synthesize_job.h)
  SynthesisBatch(const SynthesisBatch&) = delete;
  SynthesisBatch& operator=(const SynthesisBatch&) = delete;

  const SynthesisPlan& plan() const { return plan_; }
  int fit_version() const { return target_.fit_version; }
  engine::Clock::time_point started() const { return started_; }

  // Waits for every job; at `cut` (if given) the jobs still running are cancelled and deliver
  // their best stimulus so far. Items are in plan order, marked prepared when `prepared`.
  StatusOr<std::vector<BlockItem>> collect(std::optional<engine::Clock::time_point> cut,
                                           bool prepared);

 private:
  class Sink;
  SynthesisBatch(SynthesisPlan plan, BatchTarget target);
  void abandon();

  SynthesisPlan plan_;
  BatchTarget target_;
  engine::Clock::time_point started_ = engine::Clock::now();
  std::vector<std::shared_ptr<engine::SynthesizeJob>> jobs_;
  std::vector<std::shared_ptr<Sink>> sinks_;
  std::vector<std::future<Status>> done_;
};

}  // namespace stimloop::sessions
