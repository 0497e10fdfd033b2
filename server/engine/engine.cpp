#include "server/engine/engine.h"

#include <exception>

namespace stimloop::engine {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

Engine::Engine(EngineOptions options, EngineMetrics& metrics)
    : options_(options), metrics_(metrics), worker_([this] { worker_loop(); }) {}

Engine::~Engine() { shutdown(); }

Status Engine::submit(std::shared_ptr<Job> job) {
  const int p = static_cast<int>(job->priority());
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return unavailable("the server is shutting down");
    const int depth = outstanding_[p];
    if (depth >= options_.max_jobs_per_priority) {
      metrics_.count_rejected(job->priority());
      return resource_exhausted(std::string("the ") + to_string(job->priority()) +
                                " queue is full (" + std::to_string(depth) +
                                " jobs); retry later or raise --max-queue");
    }
    ++outstanding_[p];
    job->release_ = [this, p] {
      std::lock_guard lock(mutex_);
      --outstanding_[p];
    };
    queues_[p].push_back(std::move(job));
  }
  wake_.notify_one();
  return Status::Ok();
}

void Engine::shutdown() {
  std::array<std::deque<std::shared_ptr<Job>>, kNumPriorities> left;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
    left.swap(queues_);
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
  for (auto& queue : left) {
    for (auto& job : queue) {
      job->fail(unavailable("the server shut down before the job finished"));
      job->release_slot();
    }
  }
}

std::array<int, kNumPriorities> Engine::queue_depths() const {
  std::lock_guard lock(mutex_);
  std::array<int, kNumPriorities> depths{};
  for (int p = 0; p < kNumPriorities; ++p) {
    depths[p] = static_cast<int>(queues_[p].size()) + running_[p];
  }
  return depths;
}

void Engine::finish(Job& job) {
  const auto now = Clock::now();
  metrics_.observe_run(job.priority(), ms_between(job.started.value_or(now), now));
}

void Engine::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    std::vector<std::shared_ptr<Job>> companions;
    int p = 0;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] {
        if (stopping_) return true;
        for (const auto& q : queues_) {
          if (!q.empty()) return true;
        }
        return false;
      });
      if (stopping_) return;
      while (queues_[p].empty()) ++p;
      job = std::move(queues_[p].front());
      queues_[p].pop_front();
      ++running_[p];
      const std::string key = job->batch_key();
      if (!key.empty()) {
        int images = job->batch_images();
        for (int q = 0; q < kNumPriorities; ++q) {
          for (auto it = queues_[q].begin(); it != queues_[q].end();) {
            if ((*it)->batch_key() == key &&
                images + (*it)->batch_images() <= options_.max_batch_images) {
              images += (*it)->batch_images();
              ++running_[q];
              companions.push_back(std::move(*it));
              it = queues_[q].erase(it);
            } else {
              ++it;
            }
          }
        }
      }
    }

    const auto now = Clock::now();
    if (!job->started) {
      job->started = now;
      metrics_.observe_wait(job->priority(), ms_between(job->accepted(), now));
    }
    for (auto& c : companions) {
      c->started = now;
      metrics_.observe_wait(c->priority(), ms_between(c->accepted(), now));
    }

    SliceResult slice;
    try {
      slice = job->run(companions);
    } catch (const std::exception& e) {
      // A slice must never take the server down: the job (and its batch) fails instead.
      const Status error = internal_error(std::string("job failed: ") + e.what());
      job->fail(error);
      for (auto& c : companions) c->fail(error);
      slice.finished = true;
    }
    metrics_.add_steps(slice.steps);
    metrics_.count_batched(static_cast<int>(companions.size()));
    for (auto& c : companions) finish(*c);
    if (slice.finished) finish(*job);
    for (auto& c : companions) c->release_slot();  // normally released on delivery already
    if (slice.finished) job->release_slot();

    bool abandoned = false;
    {
      std::lock_guard lock(mutex_);
      for (auto& c : companions) --running_[static_cast<int>(c->priority())];
      --running_[p];
      if (!slice.finished) {
        if (stopping_) {
          abandoned = true;
        } else {
          queues_[p].push_back(job);
        }
      }
    }
    if (abandoned) {
      job->fail(unavailable("the server shut down before the job finished"));
      job->release_slot();
    }
  }
}

}  // namespace stimloop::engine
