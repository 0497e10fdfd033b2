// The engine: one worker thread that owns the backend's time. Jobs wait in one bounded queue per
// priority; the worker always takes the front job of the most urgent non-empty queue, runs one
// slice of it (one synthesis step, or a whole predict/gradient batch) and, if the job is not
// finished, puts it back at the end of its queue. So a rig job waits at most one slice of
// campaign work, and jobs of one priority share the worker round-robin. Queued predict and
// gradient jobs with the same batch key are taken together and run as one batch.
//
// Deadlines hold however busy the worker is: a timer thread watches the queued jobs' expiry
// times and ends a job that waited too long on the spot (DEADLINE_EXCEEDED, or a synthesis's
// DEADLINE with no step taken), or, when ending needs the backend, moves it ahead of every queue
// so the worker finishes it after its current slice.
#pragma once

#include <array>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "server/engine/job.h"
#include "server/engine/metrics.h"

namespace stimloop::engine {

struct EngineOptions {
  int max_jobs_per_priority = 64;  // queued or running; beyond: RESOURCE_EXHAUSTED
  int max_batch_images = 256;      // images one predict/gradient batch may gather
};

class Engine {
 public:
  Engine(EngineOptions options, EngineMetrics& metrics);
  ~Engine();  // shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues the job, or RESOURCE_EXHAUSTED (naming the queue) when its priority's queue is full,
  // or UNAVAILABLE after shutdown.
  Status submit(std::shared_ptr<Job> job);

  // Stops the worker after its current slice, and the timer; jobs still queued fail with
  // UNAVAILABLE.
  void shutdown();

  std::array<int, kNumPriorities> queue_depths() const;

 private:
  void worker_loop();
  void timer_loop();
  void finish(Job& job);
  // Under mutex_: the queued job goes to the back of its queue and the timer learns its expiry.
  void enqueue(std::shared_ptr<Job> job);
  // Under mutex_: takes the jobs whose expiry has come out of the queues.
  std::vector<std::shared_ptr<Job>> take_expired(Clock::time_point now);

  EngineOptions options_;
  EngineMetrics& metrics_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::array<std::deque<std::shared_ptr<Job>>, kNumPriorities> queues_;
  // Expired jobs waiting for the slice that ends them: taken before any queue.
  std::deque<std::shared_ptr<Job>> ending_;
  std::condition_variable timer_wake_;
  std::optional<Clock::time_point> timer_at_;      // the earliest queued expiry (may be stale)
  std::array<int, kNumPriorities> running_{};      // taken out of a queue for the current slice
  std::array<int, kNumPriorities> outstanding_{};  // submitted, result not yet delivered
  bool stopping_ = false;
  std::thread worker_;
  std::thread timer_;
};

}  // namespace stimloop::engine
