#include "server/engine/metrics.h"

#include <chrono>
#include <cstdio>

namespace stimloop::engine {
namespace {

constexpr double kRateWindowS = 10.0;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Histogram::observe(double ms) {
  std::lock_guard lock(mutex_);
  std::size_t i = 0;
  while (i < kBucketsMs.size() && ms > kBucketsMs[i]) ++i;
  ++counts_[i];
  sum_ += ms;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mutex_);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kBucketsMs.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < kBucketsMs.size() ? number(kBucketsMs[i]) : "+Inf";
    out += name + "_bucket{" + labels + ",le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum{" + labels + "} " + number(sum_) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count_) + "\n";
}

void EngineMetrics::add_steps(int steps) {
  if (steps <= 0) return;
  steps_total_.fetch_add(static_cast<std::uint64_t>(steps));
  std::lock_guard lock(mutex_);
  const double t = now_s();
  recent_steps_.emplace_back(t, steps);
  while (!recent_steps_.empty() && recent_steps_.front().first < t - kRateWindowS) {
    recent_steps_.pop_front();
  }
}

double EngineMetrics::steps_per_second() const {
  std::lock_guard lock(mutex_);
  const double t = now_s();
  long total = 0;
  for (const auto& [when, steps] : recent_steps_) {
    if (when >= t - kRateWindowS) total += steps;
  }
  return static_cast<double>(total) / kRateWindowS;
}

void EngineMetrics::count_request(const char* rpc, const char* code) {
  std::lock_guard lock(mutex_);
  ++requests_[{rpc, code}];
}

std::string EngineMetrics::render(const Gauges& g) const {
  std::string out;
  header(out, "stimloop_queue_depth", "gauge", "Jobs queued or running, per priority.");
  for (Priority p : kAllPriorities) {
    out += std::string("stimloop_queue_depth{priority=\"") + to_string(p) + "\"} " +
           std::to_string(g.queue_depth[int(p)]) + "\n";
  }
  header(out, "stimloop_queue_wait_ms", "histogram",
         "Time from acceptance to the first slice of a job, per priority (ms).");
  for (Priority p : kAllPriorities) {
    wait_ms_[int(p)].render(out, "stimloop_queue_wait_ms",
                            std::string("priority=\"") + to_string(p) + "\"");
  }
  header(out, "stimloop_job_run_ms", "histogram",
         "Time from the first slice of a job to its end, per priority (ms).");
  for (Priority p : kAllPriorities) {
    run_ms_[int(p)].render(out, "stimloop_job_run_ms",
                           std::string("priority=\"") + to_string(p) + "\"");
  }
  header(out, "stimloop_rejected_total", "counter", "Jobs refused because a queue was full.");
  for (Priority p : kAllPriorities) {
    out += std::string("stimloop_rejected_total{priority=\"") + to_string(p) + "\"} " +
           std::to_string(rejected_[int(p)].load()) + "\n";
  }
  header(out, "stimloop_synthesis_steps_total", "counter", "Synthesis steps run.");
  out += "stimloop_synthesis_steps_total " + std::to_string(steps_total_.load()) + "\n";
  header(out, "stimloop_synthesis_steps_per_second", "gauge",
         "Synthesis steps per second over the last 10 s.");
  out += "stimloop_synthesis_steps_per_second " + number(steps_per_second()) + "\n";
  header(out, "stimloop_snapshots_dropped_total", "counter",
         "Snapshots not sent because a client read too slowly.");
  out += "stimloop_snapshots_dropped_total " + std::to_string(snapshots_dropped_.load()) + "\n";
  header(out, "stimloop_batched_jobs_total", "counter",
         "Predict/gradient jobs that ran in another job's batch.");
  out += "stimloop_batched_jobs_total " + std::to_string(batched_.load()) + "\n";
  header(out, "stimloop_models_loaded", "gauge", "Models resident on the backend.");
  out += "stimloop_models_loaded{backend=\"" + g.backend + "\"} " +
         std::to_string(g.models_loaded) + "\n";
  header(out, "stimloop_device_memory_bytes", "gauge",
         "Memory in use on the backend's device (model weights and workspaces).");
  out += "stimloop_device_memory_bytes{backend=\"" + g.backend + "\"} " +
         std::to_string(g.device_memory_bytes) + "\n";
  header(out, "stimloop_serving", "gauge", "1 once models are loaded and warmed up.");
  out += std::string("stimloop_serving ") + (g.serving ? "1" : "0") + "\n";
  header(out, "stimloop_requests_total", "counter", "RPCs finished, by method and status code.");
  std::lock_guard lock(mutex_);
  for (const auto& [key, count] : requests_) {
    out += "stimloop_requests_total{method=\"" + key.first + "\",code=\"" + key.second + "\"} " +
           std::to_string(count) + "\n";
  }
  return out;
}

}  // namespace stimloop::engine
