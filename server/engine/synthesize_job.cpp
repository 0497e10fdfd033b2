#include "server/engine/synthesize_job.h"

#include <filesystem>
#include <fstream>

namespace stimloop::engine {
namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

SynthesizeJob::SynthesizeJob(std::string request_id, Priority priority,
                             std::optional<Clock::time_point> deadline, const ResidentModel* model,
                             Backend& backend, synthesis::SynthesisRequest request,
                             SynthesizeOptions options, std::shared_ptr<SynthesisSink> sink)
    : Job(std::move(request_id), priority, deadline),
      model_(model),
      backend_(backend),
      request_(std::move(request)),
      options_(std::move(options)),
      sink_(std::move(sink)) {}

void SynthesizeJob::fail(const Status& status) {
  if (ended_) return;
  ended_ = true;
  sink_->on_error(status);
}

SliceResult SynthesizeJob::run(std::vector<std::shared_ptr<Job>>& /*companions*/) {
  using synthesis::StopReason;
  if (ended_) return {true, 0};
  if (!run_) {
    // Created on the engine's thread: the backend is only ever used from there.
    auto run = synthesis::SynthesisRun::create(request_, model_->model->channel_means, backend_,
                                               model_->model->network, model_->network.get());
    if (!run.ok()) {
      fail(run.status());
      return {true, 0};
    }
    run_ = std::move(run).value();
  }
  if (cancelled()) return finish(StopReason::kCancelled);
  if (deadline() && timer_.out_of_time(Clock::now(), *deadline())) {
    return finish(StopReason::kDeadline);
  }
  const auto t0 = Clock::now();
  const bool first = run_->steps_done() == 0;
  if (Status s = run_->step(); !s.ok()) {
    fail(s.with_context(model_->model->info.id));
    return {true, 1};
  }
  timer_.record(std::chrono::duration<double>(Clock::now() - t0).count(), first);
  const int done = run_->steps_done();
  if (options_.progress_every > 0 && (done % options_.progress_every == 0 || run_->done())) {
    sink_->on_progress(run_->progress());
  }
  if (options_.snapshot_every > 0 && done % options_.snapshot_every == 0 && !run_->done()) {
    sink_->on_snapshot(run_->progress(), run_->snapshot_pixels());
  }
  if (run_->done()) {
    SliceResult r = finish(StopReason::kCompleted);
    r.steps = 1;
    return r;
  }
  return {false, 1};
}

SliceResult SynthesizeJob::finish(synthesis::StopReason reason) {
  auto result = run_->finish(reason);
  if (!result.ok()) {
    fail(result.status().with_context(model_->model->info.id));
    return {true, 0};
  }
  // The record's wall time counts from acceptance, queueing included: what the client waited.
  result->wall_ms = ms_since(accepted());
  auto outputs = make_outputs(request_, model_->model->info, backend_.name(), *result);
  if (!outputs.ok()) {
    fail(outputs.status());
    return {true, 0};
  }
  for (auto& out : *outputs) {
    out.record["request_id"] = request_id();
    save(out);
    sink_->on_stimulus(out);
  }
  SynthesisSummary summary;
  summary.steps_done = result->steps_done;
  summary.steps = request_.steps;
  summary.stop_reason = reason;
  summary.queue_ms =
      started ? std::chrono::duration<double, std::milli>(*started - accepted()).count() : 0.0;
  summary.wall_ms = result->wall_ms;
  ended_ = true;
  sink_->on_done(summary);
  return {true, 0};
}

void SynthesizeJob::save(const SynthesisOutput& out) const {
  if (options_.results_dir.empty()) return;
  // A client that vanished mid-stream loses nothing: the server keeps its own copy.
  const std::string stem = options_.results_dir + "/" + request_id() + "_" +
                           std::to_string(out.stimulus.index);
  std::ofstream png(stem + ".png", std::ios::binary);
  png.write(reinterpret_cast<const char*>(out.png.data()), std::streamsize(out.png.size()));
  nlohmann::json record = out.record;
  record["png"] = stem + ".png";
  std::ofstream json(stem + ".json");
  json << record.dump(2) << "\n";
}

}  // namespace stimloop::engine
