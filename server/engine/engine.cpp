#include "server/engine/engine.h"

#include <exception>

namespace stimloop::engine {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

// The worker is started last (in the body): it uses every member.
Engine::Engine(EngineOptions options, EngineMetrics& metrics)
    : options_(options), metrics_(metrics) {
  worker_ = std::thread([this] { worker_loop(); });
  timer_ = std::thread([this] { timer_loop(); });
}

Engine::~Engine() { shutdown(); }

void Engine::enqueue(std::shared_ptr<Job> job) {
  if (const auto at = job->expiry(); at && (!timer_at_ || *at < *timer_at_)) {
    timer_at_ = at;
    timer_wake_.notify_one();
  }
  queues_[static_cast<int>(job->priority())].push_back(std::move(job));
}

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
    enqueue(std::move(job));
  }
  wake_.notify_one();
  return Status::Ok();
}

void Engine::shutdown() {
  std::array<std::deque<std::shared_ptr<Job>>, kNumPriorities> left;
  std::deque<std::shared_ptr<Job>> ending;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
    left.swap(queues_);
    ending.swap(ending_);
  }
  wake_.notify_all();
  timer_wake_.notify_all();
  // Queued jobs end at once, not after the worker's current slice (which may be long).
  left[0].insert(left[0].end(), ending.begin(), ending.end());
  for (auto& queue : left) {
    for (auto& job : queue) {
      job->fail(unavailable("the server shut down before the job finished"));
      job->release_slot();
    }
  }
  if (worker_.joinable()) worker_.join();
  if (timer_.joinable()) timer_.join();
}

std::array<int, kNumPriorities> Engine::queue_depths() const {
  std::lock_guard lock(mutex_);
  std::array<int, kNumPriorities> depths{};
  for (int p = 0; p < kNumPriorities; ++p) {
    depths[p] = static_cast<int>(queues_[p].size()) + running_[p];
  }
  for (const auto& job : ending_) ++depths[static_cast<int>(job->priority())];
  return depths;
}

void Engine::finish(Job& job) {
  const auto now = Clock::now();
  metrics_.observe_run(job.priority(), ms_between(job.started.value_or(now), now));
}

std::vector<std::shared_ptr<Job>> Engine::take_expired(Clock::time_point now) {
  std::vector<std::shared_ptr<Job>> expired;
  timer_at_.reset();
  for (auto& queue : queues_) {
    for (auto it = queue.begin(); it != queue.end();) {
      const auto at = (*it)->expiry();
      if (at && *at <= now) {
        expired.push_back(std::move(*it));
        it = queue.erase(it);
        continue;
      }
      if (at && (!timer_at_ || *at < *timer_at_)) timer_at_ = at;
      ++it;
    }
  }
  return expired;
}

void Engine::timer_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!timer_at_) {
      timer_wake_.wait(lock);
      continue;
    }
    if (Clock::now() < *timer_at_) {
      // Wakes early when an earlier expiry arrives (or spuriously), then sleeps again.
      timer_wake_.wait_until(lock, *timer_at_);
      continue;
    }
    std::vector<std::shared_ptr<Job>> expired = take_expired(Clock::now());
    lock.unlock();
    std::vector<std::shared_ptr<Job>> to_end;
    for (auto& job : expired) {
      // Out of every queue and not running: only this thread touches the job now.
      if (job->expire()) {
        job->release_slot();
      } else {
        to_end.push_back(std::move(job));
      }
    }
    lock.lock();
    if (to_end.empty()) continue;
    if (stopping_) {
      lock.unlock();
      for (auto& job : to_end) {
        job->fail(unavailable("the server shut down before the job finished"));
        job->release_slot();
      }
      lock.lock();
      continue;
    }
    for (auto& job : to_end) ending_.push_back(std::move(job));
    wake_.notify_one();
  }
}

void Engine::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    std::vector<std::shared_ptr<Job>> companions;
    int p = 0;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] {
        if (stopping_ || !ending_.empty()) return true;
        for (const auto& q : queues_) {
          if (!q.empty()) return true;
        }
        return false;
      });
      if (stopping_) return;
      if (!ending_.empty()) {
        job = std::move(ending_.front());
        ending_.pop_front();
        p = static_cast<int>(job->priority());
      } else {
        while (queues_[p].empty()) ++p;
        job = std::move(queues_[p].front());
        queues_[p].pop_front();
      }
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
          enqueue(job);
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
