// A job that holds the engine's worker in one slice until open(): while it runs, the queues'
// contents are known exactly and nothing queued can run.
#pragma once

#include <condition_variable>
#include <future>
#include <mutex>

#include "server/engine/job.h"

namespace stimloop::engine {

class GateJob : public Job {
 public:
  explicit GateJob(Priority p) : Job("gate", p, std::nullopt) {}
  SliceResult run(std::vector<std::shared_ptr<Job>>&) override {
    running_.set_value();
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
    return {true, 0};
  }
  void fail(const Status&) override {}
  void wait_running() { running_.get_future().wait(); }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::promise<void> running_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace stimloop::engine
