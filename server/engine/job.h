// A unit of work the engine schedules. A job runs in slices: a synthesis job does one step per
// slice and goes back to the end of its queue, so more urgent work that arrived meanwhile runs
// next (step-level preemption); a predict or gradient job finishes in one slice. Jobs deliver
// their results themselves (to a callback or a sink), from the engine's thread, and must never
// block it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "server/engine/priority.h"

namespace stimloop::engine {

using Clock = std::chrono::steady_clock;

// What a job that waited in a queue past its deadline ends with.
inline Status waited_past_deadline(Priority priority) {
  return deadline_exceeded(std::string("the deadline passed while the request waited in the ") +
                           to_string(priority) + " queue");
}

struct SliceResult {
  bool finished = false;
  int steps = 0;  // synthesis steps done in this slice (for the steps/s metric)
};

class Job {
 public:
  Job(std::string request_id, Priority priority, std::optional<Clock::time_point> deadline)
      : request_id_(std::move(request_id)), priority_(priority), deadline_(deadline) {}
  virtual ~Job() = default;
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const std::string& request_id() const { return request_id_; }
  Priority priority() const { return priority_; }
  const std::optional<Clock::time_point>& deadline() const { return deadline_; }
  Clock::time_point accepted() const { return accepted_; }

  // Asked by the client's side (cancel, disconnect); the job stops at its next slice.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Jobs with the same non-empty key may run as one batch; batch_images is what each adds.
  virtual std::string batch_key() const { return {}; }
  virtual int batch_images() const { return 1; }

  // Runs one slice. `companions` are queued jobs with this job's batch key that the engine took
  // out of the queues to run in the same slice; a slice that takes them must finish them too.
  virtual SliceResult run(std::vector<std::shared_ptr<Job>>& companions) = 0;

  // Finishes the job with an error without running it (engine shutdown, an exception).
  virtual void fail(const Status& status) = 0;

  // When the engine must act on the job if it is still waiting in a queue, however busy the
  // worker is: its deadline unless the job needs to stop earlier.
  virtual std::optional<Clock::time_point> expiry() const { return deadline(); }

  // Called by the engine's timer, off the engine's thread, once expiry() has passed while the job
  // waited; the job is then out of every queue. Ends the job and returns true, or returns false
  // when ending needs the backend (a synthesis's best stimulus so far is evaluated once more):
  // the engine then gives the job one more slice before any other queued work.
  virtual bool expire() {
    fail(waited_past_deadline(priority_));
    return true;
  }

  // Set by the engine.
  std::optional<Clock::time_point> started;

 protected:
  // Called just before the job delivers its final result or error: from then on it no longer
  // counts against its queue's limit, so a client that sends its next request as soon as it has
  // the answer finds the slot free. Idempotent; the engine also calls it once the job has ended.
  void release_slot() {
    if (auto release = std::exchange(release_, nullptr)) release();
  }

 private:
  friend class Engine;
  std::function<void()> release_;  // set by Engine::submit
  std::string request_id_;
  Priority priority_;
  std::optional<Clock::time_point> deadline_;
  Clock::time_point accepted_ = Clock::now();
  std::atomic<bool> cancelled_{false};
};

}  // namespace stimloop::engine
