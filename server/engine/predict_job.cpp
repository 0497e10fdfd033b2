#include "server/engine/predict_job.h"

#include <cstdint>

#include "common/finite.h"
#include "models/preprocess.h"

namespace stimloop::engine {
namespace {

// Splits the batch into the jobs that may still run and fails the others.
template <typename JobType>
std::vector<JobType*> runnable_jobs(JobType& first, std::vector<std::shared_ptr<Job>>& companions) {
  std::vector<JobType*> jobs;
  for (Job* j : [&] {
         std::vector<Job*> all{&first};
         for (auto& c : companions) all.push_back(c.get());
         return all;
       }()) {
    Status admitted = admission_check(*j);
    if (admitted.ok()) {
      jobs.push_back(static_cast<JobType*>(j));
    } else {
      j->fail(admitted);
    }
  }
  return jobs;
}

std::string address_of(const ResidentModel& m) {
  return std::to_string(reinterpret_cast<std::uintptr_t>(&m));
}

}  // namespace

Status admission_check(const Job& job) {
  if (job.cancelled()) return cancelled("the client cancelled the request");
  if (job.deadline() && Clock::now() >= *job.deadline()) {
    return waited_past_deadline(job.priority());
  }
  return Status::Ok();
}

PredictJob::PredictJob(std::string request_id, Priority priority,
                       std::optional<Clock::time_point> deadline,
                       std::vector<ResidentModelPtr> models, std::vector<std::uint8_t> raw, int n,
                       Done done)
    : Job(std::move(request_id), priority, deadline),
      models_(std::move(models)),
      raw_(std::move(raw)),
      n_(n),
      done_([this, done = std::move(done)](StatusOr<PredictResult> result) {
        release_slot();
        done(std::move(result));
      }) {
  // The resident copy's address is part of the key: a replaced (recalibrated) model with the
  // same id must not answer for a job that asked before the replacement.
  key_ = "predict";
  for (const auto& m : models_) key_ += "|" + m->model->info.id + "@" + address_of(*m);
}

SliceResult PredictJob::run(std::vector<std::shared_ptr<Job>>& companions) {
  std::vector<PredictJob*> jobs = runnable_jobs(*this, companions);
  if (jobs.empty()) return {true, 0};
  int total = 0;
  std::vector<std::uint8_t> raw;
  for (const PredictJob* j : jobs) {
    raw.insert(raw.end(), j->raw_.begin(), j->raw_.end());
    total += j->n_;
  }
  std::vector<PredictResult> results(jobs.size());
  for (const auto& m : models_) {
    const int outputs = m->model->info.num_outputs;
    const std::vector<float> input = recenter_rgb8(raw, m->model->channel_means);
    std::vector<float> responses(static_cast<std::size_t>(total) * outputs);
    Status s = m->network->forward(input, total, responses);
    if (s.ok()) s = check_finite<float>(responses, "responses");
    if (!s.ok()) {
      for (PredictJob* j : jobs) j->done_(s.with_context(m->model->info.id));
      return {true, 0};
    }
    std::size_t offset = 0;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      const std::size_t rows = static_cast<std::size_t>(jobs[k]->n_) * outputs;
      results[k].responses.emplace_back(responses.begin() + offset,
                                        responses.begin() + offset + rows);
      offset += rows;
    }
  }
  for (std::size_t k = 0; k < jobs.size(); ++k) jobs[k]->done_(std::move(results[k]));
  return {true, 0};
}

GradientJob::GradientJob(std::string request_id, Priority priority,
                         std::optional<Clock::time_point> deadline, ResidentModelPtr model,
                         std::vector<std::uint8_t> raw, int n, std::vector<float> seed, Done done)
    : Job(std::move(request_id), priority, deadline),
      model_(std::move(model)),
      raw_(std::move(raw)),
      n_(n),
      seed_(std::move(seed)),
      done_([this, done = std::move(done)](StatusOr<GradientResult> result) {
        release_slot();
        done(std::move(result));
      }),
      key_("gradient|" + model_->model->info.id + "@" + address_of(*model_)) {}

SliceResult GradientJob::run(std::vector<std::shared_ptr<Job>>& companions) {
  std::vector<GradientJob*> jobs = runnable_jobs(*this, companions);
  if (jobs.empty()) return {true, 0};
  const int outputs = model_->model->info.num_outputs;
  int total = 0;
  std::vector<std::uint8_t> raw;
  std::vector<float> seeds;  // one row per image: its job's seed
  for (const GradientJob* j : jobs) {
    raw.insert(raw.end(), j->raw_.begin(), j->raw_.end());
    for (int i = 0; i < j->n_; ++i) seeds.insert(seeds.end(), j->seed_.begin(), j->seed_.end());
    total += j->n_;
  }
  const std::vector<float> input = recenter_rgb8(raw, model_->model->channel_means);
  std::vector<float> responses(static_cast<std::size_t>(total) * outputs);
  std::vector<float> gradients(input.size());
  const auto seed_rows = [&](int first, int count, std::span<const float>, std::span<float> out) {
    std::copy(seeds.begin() + std::size_t(first) * outputs,
              seeds.begin() + std::size_t(first + count) * outputs, out.begin());
  };
  Status s = model_->network->vector_jacobian(input, total, seed_rows, responses, gradients);
  if (s.ok()) s = check_finite<float>(responses, "responses");
  if (s.ok()) s = check_finite<float>(gradients, "gradients");
  if (!s.ok()) {
    for (GradientJob* j : jobs) j->done_(s.with_context(model_->model->info.id));
    return {true, 0};
  }
  const std::size_t image_size = input.size() / total;
  std::size_t row = 0;
  for (GradientJob* j : jobs) {
    GradientResult r;
    r.responses.assign(responses.begin() + row * outputs,
                       responses.begin() + (row + j->n_) * outputs);
    r.gradients.assign(gradients.begin() + row * image_size,
                       gradients.begin() + (row + j->n_) * image_size);
    row += j->n_;
    j->done_(std::move(r));
  }
  return {true, 0};
}

}  // namespace stimloop::engine
