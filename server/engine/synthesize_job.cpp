#include "server/engine/synthesize_job.h"

namespace stimloop::engine {
namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

std::optional<double> StepTimeBook::lookup(const std::string& model, int count) const {
  std::lock_guard lock(mutex_);
  const auto it = seconds_.find({model, count});
  if (it == seconds_.end()) return std::nullopt;
  return it->second;
}

void StepTimeBook::update(const std::string& model, int count, double seconds) {
  std::lock_guard lock(mutex_);
  seconds_[{model, count}] = seconds;
}

SynthesizeJob::SynthesizeJob(std::string request_id, Priority priority,
                             std::optional<Clock::time_point> deadline, ResidentModelPtr model,
                             Backend& backend, synthesis::SynthesisRequest request,
                             SynthesizeOptions options, std::shared_ptr<SynthesisSink> sink)
    : Job(std::move(request_id), priority, deadline),
      model_(std::move(model)),
      backend_(backend),
      request_(std::move(request)),
      options_(std::move(options)),
      sink_(std::move(sink)) {
  // Known step times count from the start, so that even a job that never ran knows when it can
  // no longer fit a step.
  if (options_.step_times) {
    if (auto known = options_.step_times->lookup(model_->model->info.id, part_size())) {
      timer_.prime(*known);
    }
  }
}

int SynthesizeJob::part_size() const {
  const int chunk = options_.max_images_per_slice;
  const bool split = chunk > 0 && request_.count > chunk && request_.diversity_weight == 0.0;
  return split ? chunk : request_.count;
}

std::optional<Clock::time_point> SynthesizeJob::expiry() const {
  if (!deadline()) return std::nullopt;
  return timer_.latest_start(*deadline());
}

bool SynthesizeJob::expire() {
  if (ended_) return true;
  expired_ = true;
  // The best stimulus so far (or the starting image) is evaluated on the engine.
  if (!parts_.empty() || options_.always_deliver) return false;
  end_unstarted(synthesis::StopReason::kDeadline);
  return true;
}

void SynthesizeJob::fail(const Status& status) {
  if (ended_) return;
  ended_ = true;
  release_slot();
  sink_->on_error(status);
}

Status SynthesizeJob::create_parts() {
  const int size = part_size();
  for (int first = 0; first < request_.count; first += size) {
    synthesis::SynthesisRequest part = request_;
    part.seed = request_.seed + static_cast<std::uint64_t>(first);
    part.count = std::min(size, request_.count - first);
    // Created on the engine's thread: the backend is only ever used from there.
    ASSIGN_OR_RETURN(
        auto run, synthesis::SynthesisRun::create(part, model_->model->channel_means, backend_,
                                                  model_->model->network, model_->network.get()));
    parts_.push_back({std::move(run), first});
  }
  return Status::Ok();
}

int SynthesizeJob::min_steps_done() const {
  int steps = request_.steps;
  for (const auto& part : parts_) steps = std::min(steps, part.run->steps_done());
  return steps;
}

synthesis::ProgressEvent SynthesizeJob::progress() const {
  synthesis::ProgressEvent event{min_steps_done(), request_.steps, {}};
  for (const auto& part : parts_) {
    const auto p = part.run->progress();
    event.best_response.insert(event.best_response.end(), p.best_response.begin(),
                               p.best_response.end());
  }
  return event;
}

SliceResult SynthesizeJob::run(std::vector<std::shared_ptr<Job>>& /*companions*/) {
  using synthesis::StopReason;
  if (ended_) return {true, 0};
  if (abandoned_.load()) {
    fail(Status(StatusCode::kCancelled, "abandoned: its result is no longer wanted"));
    return {true, 0};
  }
  // Before the first step there is no stimulus to return, unless options_.always_deliver.
  if (cancelled()) {
    return end_now(StopReason::kCancelled);
  }
  if (deadline() && (expired_ || timer_.out_of_time(Clock::now(), *deadline()))) {
    return end_now(StopReason::kDeadline);
  }
  if (parts_.empty()) {
    if (Status s = create_parts(); !s.ok()) {
      fail(s);
      return {true, 0};
    }
  }
  // The next part that still has steps to do (parts advance in turn, so they stay level).
  while (parts_[next_part_].run->done()) next_part_ = (next_part_ + 1) % parts_.size();
  synthesis::SynthesisRun& run = *parts_[next_part_].run;
  next_part_ = (next_part_ + 1) % parts_.size();

  const auto t0 = Clock::now();
  const bool first = run.steps_done() == 0;
  if (Status s = run.step(); !s.ok()) {
    fail(s.with_context(model_->model->info.id));
    return {true, 1};
  }
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  timer_.record(took, first);
  if (options_.step_times && !first) {
    options_.step_times->update(model_->model->info.id, run.request().count, took);
  }
  const int done = min_steps_done();
  const bool all_done = done >= request_.steps;
  if (done > reported_steps_) {  // every part has finished step `done`
    reported_steps_ = done;
    if (options_.progress_every > 0 && (done % options_.progress_every == 0 || all_done)) {
      sink_->on_progress(progress());
    }
    if (options_.snapshot_every > 0 && done % options_.snapshot_every == 0 && !all_done) {
      std::vector<std::vector<std::uint8_t>> pixels;
      for (const auto& part : parts_) {
        for (auto& image : part.run->snapshot_pixels()) pixels.push_back(std::move(image));
      }
      sink_->on_snapshot(progress(), std::move(pixels));
    }
  }
  if (all_done) {
    SliceResult r = finish(StopReason::kCompleted);
    r.steps = 1;
    return r;
  }
  return {false, 1};
}

SliceResult SynthesizeJob::finish(synthesis::StopReason reason) {
  std::vector<SynthesisOutput> outputs;
  int steps_done = request_.steps;
  const double wall_ms = ms_since(accepted());
  for (auto& part : parts_) {
    // A part that completed its steps says so even when the batch stopped for a deadline.
    auto result = part.run->finish(part.run->done() ? synthesis::StopReason::kCompleted : reason);
    if (!result.ok()) {
      fail(result.status().with_context(model_->model->info.id));
      return {true, 0};
    }
    steps_done = std::min(steps_done, result->steps_done);
    // The record's wall time counts from acceptance, queueing included: what the client waited.
    result->wall_ms = wall_ms;
    for (auto& st : result->stimuli) st.index += part.first;  // seeds already are seed + index
    auto part_outputs = make_outputs(request_, model_->model->info, backend_.name(), *result);
    if (!part_outputs.ok()) {
      fail(part_outputs.status());
      return {true, 0};
    }
    for (auto& out : *part_outputs) outputs.push_back(std::move(out));
  }
  for (auto& out : outputs) {
    out.record["request_id"] = request_id();
    sink_->on_stimulus(out);  // before the synced writes below: a rig waits for no disk
  }
  Status saved = Status::Ok();
  for (const auto& out : outputs) {
    if (Status s = save(out); saved.ok()) saved = s;
  }
  if (!saved.ok()) {
    // The client has every stimulus; the error says the server's copy is missing.
    fail(saved);
    return {true, 0};
  }
  const SynthesisSummary done = summary(steps_done, reason);
  ended_ = true;
  release_slot();
  sink_->on_done(done);
  return {true, 0};
}

SliceResult SynthesizeJob::end_now(synthesis::StopReason reason) {
  if (parts_.empty()) {
    if (!options_.always_deliver) return end_unstarted(reason);
    if (Status s = create_parts(); !s.ok()) {
      fail(s);
      return {true, 0};
    }
  }
  return finish(reason);
}

SliceResult SynthesizeJob::end_unstarted(synthesis::StopReason reason) {
  const SynthesisSummary done = summary(0, reason);
  ended_ = true;
  release_slot();
  sink_->on_done(done);
  return {true, 0};
}

SynthesisSummary SynthesizeJob::summary(int steps_done, synthesis::StopReason reason) const {
  SynthesisSummary s;
  s.steps_done = steps_done;
  s.steps = request_.steps;
  s.stop_reason = reason;
  s.wall_ms = ms_since(accepted());
  // A job that never ran waited all along.
  s.queue_ms = started ? std::chrono::duration<double, std::milli>(*started - accepted()).count()
                       : s.wall_ms;
  return s;
}

Status SynthesizeJob::save(const SynthesisOutput& out) {
  if (options_.results_dir.empty()) return Status::Ok();
  // A client that vanished mid-stream loses nothing: the server keeps its own copy.
  auto saved = save_stimulus(options_.results_dir, request_id(), save_generation_, out);
  return saved.ok() ? Status::Ok() : saved.status().with_context("results directory");
}

}  // namespace stimloop::engine
