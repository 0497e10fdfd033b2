#include "server/engine/task_job.h"

#include "server/engine/predict_job.h"

namespace stimloop::engine {

TaskJob::TaskJob(std::string request_id, Priority priority,
                 std::optional<Clock::time_point> deadline, Body body)
    : Job(std::move(request_id), priority, deadline), body_(std::move(body)) {}

void TaskJob::end(const Status& status) {
  if (ended_) return;
  ended_ = true;
  release_slot();
  promise_.set_value(status);
}

SliceResult TaskJob::run(std::vector<std::shared_ptr<Job>>&) {
  Status admitted = admission_check(*this);
  end(admitted.ok() ? body_() : admitted);
  return {true, 0};
}

void TaskJob::fail(const Status& status) { end(status); }

Status run_on_engine(Engine& engine, std::string request_id, Priority priority,
                     std::optional<Clock::time_point> deadline, TaskJob::Body body) {
  auto job = std::make_shared<TaskJob>(std::move(request_id), priority, deadline, std::move(body));
  auto result = job->result();
  RETURN_IF_ERROR(engine.submit(job));
  return result.get();
}

}  // namespace stimloop::engine
