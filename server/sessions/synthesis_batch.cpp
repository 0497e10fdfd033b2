#include "server/sessions/synthesis_batch.h"

#include <mutex>

namespace stimloop::sessions {
namespace {

StatusOr<synthesis::SynthesisRequest> synthesis_request(const BlockRequest& r, std::uint64_t seed) {
  synthesis::SynthesisRequest s;
  if (r.synthesis) {
    s = *r.synthesis;
  } else {
    s.objective = r.objective;
    s.method = r.method.value_or(synthesis::MethodKind::kCowley2026);
    const auto defaults = synthesis::method_defaults(s.method, s.norm, s.epsilon);
    s.steps = r.steps > 0 ? r.steps : defaults.steps;
    s.step_size = defaults.step_size;
  }
  if (s.objective != synthesis::ObjectiveKind::kMax &&
      s.objective != synthesis::ObjectiveKind::kMin) {
    return invalid_argument("strategy.objective: SYNTHESIZE blocks take MAX or MIN");
  }
  s.seed = seed;
  s.count = 1;
  s.deadline_ms = 0.0;
  if (Status st = synthesis::validate(s); !st.ok()) return st.with_context("strategy");
  return s;
}

}  // namespace

// Collects one job's stimulus; never blocks the engine thread.
class SynthesisBatch::Sink : public engine::SynthesisSink {
 public:
  void on_progress(const synthesis::ProgressEvent&) override {}
  void on_snapshot(const synthesis::ProgressEvent&,
                   std::vector<std::vector<std::uint8_t>>) override {}
  void on_stimulus(const engine::SynthesisOutput& output) override {
    std::lock_guard lock(mutex_);
    outputs_.push_back(output);
  }
  void on_done(const engine::SynthesisSummary& summary) override {
    {
      std::lock_guard lock(mutex_);
      stopped_early_ = summary.stop_reason != synthesis::StopReason::kCompleted;
    }
    done_.set_value(Status::Ok());
  }
  void on_error(const Status& status) override { done_.set_value(status); }

  std::future<Status> done() { return done_.get_future(); }
  std::vector<engine::SynthesisOutput> outputs() {
    std::lock_guard lock(mutex_);
    return outputs_;
  }
  bool stopped_early() {
    std::lock_guard lock(mutex_);
    return stopped_early_;
  }

 private:
  std::mutex mutex_;
  std::vector<engine::SynthesisOutput> outputs_;
  std::promise<Status> done_;
  bool stopped_early_ = false;
};

std::string SynthesisPlan::key() const {
  nlohmann::json j = {{"block_index", block_index},
                      {"first_position", first_position},
                      {"channels", channels},
                      {"requests", nlohmann::json::array()}};
  for (const auto& r : requests) j["requests"].push_back(synthesis::to_json(r));
  return j.dump();
}

StatusOr<SynthesisPlan> plan_syntheses(const BlockRequest& request, int block_index,
                                       int first_position, int count, std::uint64_t seed,
                                       int channel_count) {
  SynthesisPlan plan;
  plan.block_index = block_index;
  plan.first_position = first_position;
  for (int j = 0; j < count; ++j) {
    const int position = first_position + j;
    const int channel = (block_index + position) % channel_count;
    ASSIGN_OR_RETURN(auto r, synthesis_request(request, seed + position));
    r.output_index = channel;
    plan.channels.push_back(channel);
    plan.requests.push_back(std::move(r));
  }
  return plan;
}

SynthesisBatch::SynthesisBatch(SynthesisPlan plan, BatchTarget target)
    : plan_(std::move(plan)), target_(std::move(target)) {}

SynthesisBatch::~SynthesisBatch() { abandon(); }

void SynthesisBatch::abandon() {
  for (auto& job : jobs_) job->abandon();
}

StatusOr<std::unique_ptr<SynthesisBatch>> SynthesisBatch::start(
    SynthesisPlan plan, BatchTarget target, engine::Priority priority,
    std::optional<engine::Clock::time_point> deadline, engine::Engine& engine, Backend& backend,
    std::shared_ptr<engine::StepTimeBook> step_times, const std::string& request_id) {
  std::unique_ptr<SynthesisBatch> batch(new SynthesisBatch(std::move(plan), std::move(target)));
  engine::SynthesizeOptions options;
  options.step_times = std::move(step_times);
  options.always_deliver = true;  // every slot of the block gets a stimulus, if only its start
  for (const auto& planned : batch->plan_.requests) {
    synthesis::SynthesisRequest request = planned;
    if (deadline) {
      request.deadline_ms =
          std::chrono::duration<double, std::milli>(*deadline - engine::Clock::now()).count();
    }
    auto sink = std::make_shared<Sink>();
    auto job = std::make_shared<engine::SynthesizeJob>(request_id, priority, deadline,
                                                       batch->target_.model, backend,
                                                       std::move(request), options, sink);
    auto done = sink->done();
    if (Status st = engine.submit(job); !st.ok()) {
      // Jobs already submitted still end and fulfil their futures: stop them and wait.
      batch->abandon();
      for (auto& f : batch->done_) f.wait();
      return st;
    }
    batch->jobs_.push_back(std::move(job));
    batch->sinks_.push_back(std::move(sink));
    batch->done_.push_back(std::move(done));
  }
  return batch;
}

StatusOr<std::vector<BlockItem>> SynthesisBatch::collect(
    std::optional<engine::Clock::time_point> cut, bool prepared) {
  if (cut) {
    for (std::size_t j = 0; j < done_.size(); ++j) {
      if (done_[j].wait_until(*cut) != std::future_status::ready) jobs_[j]->cancel();
    }
  }
  Status first_error;
  for (auto& f : done_) {
    Status st = f.get();
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  done_.clear();
  RETURN_IF_ERROR(first_error);
  std::vector<BlockItem> items;
  for (std::size_t j = 0; j < sinks_.size(); ++j) {
    auto outputs = sinks_[j]->outputs();
    if (outputs.empty()) {
      return deadline_exceeded("the deadline left no time for a synthesis step (stimulus " +
                               std::to_string(plan_.first_position + j) + ")");
    }
    const int channel = plan_.channels[j];
    BlockItem item;
    item.origin = "synthesized";
    nlohmann::json source = {{"model_id", target_.model_id},
                             {"output_index", channel},
                             {"channel_id", target_.channel_ids[channel]},
                             {"record", outputs.front().record}};
    if (prepared) source["prepared_from_fit"] = target_.fit_version;
    item.source_json = source.dump();
    const auto& predicted = outputs.front().stimulus.outputs;
    item.predicted.assign(predicted.begin(), predicted.end());
    item.pixels = outputs.front().stimulus.pixels;
    item.png = outputs.front().png;
    item.stopped_early = sinks_[j]->stopped_early();
    item.prepared = prepared;
    item.prepared_fit_version = target_.fit_version;
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace stimloop::sessions
