// What the engine measures about itself, rendered in the Prometheus text format. The HTTP side
// (server/service/metrics_endpoint) only serves the text; nothing here knows about HTTP or gRPC.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "server/engine/priority.h"

namespace stimloop::engine {

// A fixed-bucket histogram of milliseconds (cumulative buckets, as Prometheus wants them).
class Histogram {
 public:
  static constexpr std::array<double, 15> kBucketsMs = {
      1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};
  void observe(double ms);
  // Appends the _bucket/_sum/_count lines for `name{labels}`.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  mutable std::mutex mutex_;
  std::array<std::uint64_t, kBucketsMs.size() + 1> counts_{};  // last: +Inf
  double sum_ = 0.0;
  std::uint64_t count_ = 0;
};

class EngineMetrics {
 public:
  void observe_wait(Priority p, double ms) { wait_ms_[int(p)].observe(ms); }
  void observe_run(Priority p, double ms) { run_ms_[int(p)].observe(ms); }
  void add_steps(int steps);
  void count_request(const char* rpc, const char* code);
  void count_rejected(Priority p) { rejected_[int(p)].fetch_add(1); }
  void count_snapshot_dropped() { snapshots_dropped_.fetch_add(1); }
  // Jobs that ran as companions of another job's batch.
  void count_batched(int jobs) { batched_.fetch_add(static_cast<std::uint64_t>(jobs)); }
  std::uint64_t batched() const { return batched_.load(); }
  std::uint64_t steps_total() const { return steps_total_.load(); }

  // Synthesis steps per second over the last ~10 s.
  double steps_per_second() const;

  // Gauges read at scrape time from whoever owns them.
  struct Gauges {
    std::array<int, kNumPriorities> queue_depth{};
    int models_loaded = 0;
    std::int64_t device_memory_bytes = 0;
    std::string backend;
    bool serving = false;
  };
  std::string render(const Gauges& gauges) const;

 private:
  std::array<Histogram, kNumPriorities> wait_ms_, run_ms_;
  std::array<std::atomic<std::uint64_t>, kNumPriorities> rejected_{};
  std::atomic<std::uint64_t> steps_total_{0}, snapshots_dropped_{0}, batched_{0};
  mutable std::mutex mutex_;
  std::deque<std::pair<double, int>> recent_steps_;  // (time s, steps) within the window
  std::map<std::pair<std::string, std::string>, std::uint64_t> requests_;  // (rpc, code)
};

}  // namespace stimloop::engine
