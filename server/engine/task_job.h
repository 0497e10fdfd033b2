// Backend work asked for by a layer above the engine (a session computing features, uploading a
// calibrated model): a callable run on the engine's thread in one slice, at its priority, so it
// never races the jobs that own the backend and a rig's work still goes first. run_on_engine()
// blocks its caller until the body ran (or the job failed); never call it from the engine thread.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "server/engine/engine.h"
#include "server/engine/job.h"

namespace stimloop::engine {

class TaskJob : public Job {
 public:
  using Body = std::function<Status()>;
  TaskJob(std::string request_id, Priority priority, std::optional<Clock::time_point> deadline,
          Body body);

  std::future<Status> result() { return promise_.get_future(); }
  SliceResult run(std::vector<std::shared_ptr<Job>>& companions) override;
  void fail(const Status& status) override;

 private:
  void end(const Status& status);
  Body body_;
  std::promise<Status> promise_;
  bool ended_ = false;
};

Status run_on_engine(Engine& engine, std::string request_id, Priority priority,
                     std::optional<Clock::time_point> deadline, TaskJob::Body body);

}  // namespace stimloop::engine
