// Deadlines of queued jobs hold however busy the engine's worker is: the engine's timer ends a
// job that waited past its deadline on time (DEADLINE_EXCEEDED; a synthesis with no step yet
// ends DEADLINE with no stimulus), and a synthesis that had started is finished, with its best
// stimulus so far, ahead of the work that starved it.
#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <mutex>
#include <thread>

#include "server/engine/engine.h"
#include "server/engine/model_registry.h"
#include "server/engine/predict_job.h"
#include "server/engine/synthesize_job.h"
#include "server/engine/task_job.h"
#include "tests/integration/gate_job.h"
#include "tests/integration/server_fixture.h"

namespace stimloop::engine {
namespace {

using std::chrono::milliseconds;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Saturates its priority with short slices until stopped: never lets a lower priority run.
class BusyJob : public Job {
 public:
  explicit BusyJob(Priority p) : Job("busy", p, std::nullopt) {}
  SliceResult run(std::vector<std::shared_ptr<Job>>&) override {
    std::this_thread::sleep_for(milliseconds(15));
    return {stop_.load(), 0};
  }
  void fail(const Status&) override {}
  void stop() { stop_ = true; }

 private:
  std::atomic<bool> stop_{false};
};

// What a synthesis job delivered, with the time its end arrived.
class RecordingSink : public SynthesisSink {
 public:
  void on_progress(const synthesis::ProgressEvent& p) override { steps_ = p.steps_done; }
  void on_snapshot(const synthesis::ProgressEvent&,
                   std::vector<std::vector<std::uint8_t>>) override {}
  void on_stimulus(const SynthesisOutput& out) override {
    std::lock_guard lock(mutex_);
    stimuli_.push_back(out);
  }
  void on_done(const SynthesisSummary& summary) override {
    std::lock_guard lock(mutex_);
    summary_ = summary;
    ended_.set_value(Status::Ok());
  }
  void on_error(const Status& status) override { ended_.set_value(status); }

  std::future<Status> ended() { return ended_.get_future(); }
  int steps_seen() const { return steps_.load(); }
  std::vector<SynthesisOutput> stimuli() {
    std::lock_guard lock(mutex_);
    return stimuli_;
  }
  SynthesisSummary summary() {
    std::lock_guard lock(mutex_);
    return summary_;
  }

 private:
  std::mutex mutex_;
  std::atomic<int> steps_{0};
  std::vector<SynthesisOutput> stimuli_;
  SynthesisSummary summary_;
  std::promise<Status> ended_;
};

// The demo models and an engine whose worker a rig GateJob holds (until open()).
struct HeldEngine {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  std::unique_ptr<ModelRegistry> registry;
  ResidentModelPtr demo;
  EngineMetrics metrics;
  Engine engine{{}, metrics};
  std::shared_ptr<GateJob> gate = std::make_shared<GateJob>(Priority::kRig);
  explicit HeldEngine(bool held = true) {
    auto loaded = ModelRegistry::load({}, true, *backend);
    REQUIRE(loaded.ok());
    registry = std::move(loaded).value();
    auto found = registry->find("demo");
    REQUIRE(found.ok());
    demo = *found;
    if (held) {
      REQUIRE(engine.submit(gate).ok());
      gate->wait_running();
    }
  }
  ~HeldEngine() { gate->open(); }
};

std::shared_ptr<SynthesizeJob> synthesis_job(HeldEngine& m, Priority p, Clock::time_point deadline,
                                             std::shared_ptr<RecordingSink> sink,
                                             bool always_deliver = false) {
  synthesis::SynthesisRequest request;
  request.steps = 100000;
  SynthesizeOptions options;
  options.progress_every = 1;
  options.always_deliver = always_deliver;
  return std::make_shared<SynthesizeJob>("synth", p, deadline, m.demo, m.registry->backend(),
                                         request, options, std::move(sink));
}

// Generous for a loaded two-core machine; what was measured before the timer was seconds (until
// the work in front ended).
constexpr int kSlackMs = 700;

}  // namespace

TEST_CASE("a queued predict or task ends with DEADLINE_EXCEEDED on time while the worker is busy",
          "[integration][engine][deadline]") {
  HeldEngine m;
  Engine& engine = m.engine;

  const auto t0 = Clock::now();
  std::promise<std::pair<Status, double>> predicted;
  auto predict = std::make_shared<PredictJob>(
      "p", Priority::kCampaign, t0 + milliseconds(200), std::vector<ResidentModelPtr>{m.demo},
      stimloop::testing::test_pixels(1), 1, [&](StatusOr<PredictResult> r) {
        predicted.set_value({r.status(), ms_since(t0)});
      });
  REQUIRE(engine.submit(predict).ok());
  auto task = std::make_shared<TaskJob>("t", Priority::kInteractive, t0 + milliseconds(300),
                                        [] { return Status::Ok(); });
  auto task_result = task->result();
  REQUIRE(engine.submit(task).ok());

  auto predict_future = predicted.get_future();
  const bool predict_ended =
      predict_future.wait_for(milliseconds(3000)) == std::future_status::ready;
  const bool task_ended = task_result.wait_for(milliseconds(1000)) == std::future_status::ready;
  const auto depths = engine.queue_depths();  // while the gate still holds the worker
  m.gate->open();
  // Whatever happened, both end before the test's locals go.
  predict_future.wait_for(milliseconds(5000));
  task_result.wait_for(milliseconds(5000));
  REQUIRE(predict_ended);
  REQUIRE(task_ended);
  const auto [status, ms] = predict_future.get();
  CHECK(status.code() == StatusCode::kDeadlineExceeded);
  CHECK_THAT(status.message(), Catch::Contains("campaign queue"));
  INFO("predict answered after " << ms << " ms (deadline 200 ms)");
  CHECK(ms >= 200);
  CHECK(ms < 200 + kSlackMs);
  const Status task_status = task_result.get();
  CHECK(task_status.code() == StatusCode::kDeadlineExceeded);
  // Both left their queues; only the gate was still there.
  CHECK(depths == std::array<int, 3>{1, 0, 0});
}

TEST_CASE("a synthesis that never ran ends DEADLINE with no stimulus at its deadline",
          "[integration][engine][deadline]") {
  HeldEngine m;
  Engine& engine = m.engine;

  const auto t0 = Clock::now();
  auto sink = std::make_shared<RecordingSink>();
  auto ended = sink->ended();
  REQUIRE(engine.submit(synthesis_job(m, Priority::kCampaign, t0 + milliseconds(300), sink)).ok());
  const bool on_time = ended.wait_for(milliseconds(300 + kSlackMs)) == std::future_status::ready;
  const double ms = ms_since(t0);
  m.gate->open();
  REQUIRE(ended.wait_for(milliseconds(5000)) == std::future_status::ready);
  INFO("ended after " << ms << " ms (deadline 300 ms)");
  CHECK(on_time);
  REQUIRE(ended.get().ok());
  CHECK(sink->stimuli().empty());
  CHECK(sink->summary().stop_reason == synthesis::StopReason::kDeadline);
  CHECK(sink->summary().steps_done == 0);
  CHECK(sink->summary().queue_ms >= 290);
}

TEST_CASE(
    "a started synthesis starved by more urgent work returns its best stimulus by its deadline",
    "[integration][engine][deadline]") {
  HeldEngine m(/*held=*/false);
  Engine& engine = m.engine;
  const auto t0 = Clock::now();
  constexpr int kDeadlineMs = 1500;
  auto sink = std::make_shared<RecordingSink>();
  auto ended = sink->ended();
  REQUIRE(engine.submit(synthesis_job(m, Priority::kCampaign, t0 + milliseconds(kDeadlineMs), sink))
              .ok());
  for (int i = 0; i < 500 && sink->steps_seen() < 3; ++i)
    std::this_thread::sleep_for(milliseconds(2));
  REQUIRE(sink->steps_seen() >= 3);
  // Interactive work now holds the worker for good.
  auto busy = std::make_shared<BusyJob>(Priority::kInteractive);
  REQUIRE(engine.submit(busy).ok());
  const bool on_time = ended.wait_for(milliseconds(kDeadlineMs + kSlackMs) - (Clock::now() - t0)) ==
                       std::future_status::ready;
  const double ms = ms_since(t0);
  busy->stop();
  REQUIRE(ended.wait_for(milliseconds(5000)) == std::future_status::ready);
  INFO("ended after " << ms << " ms (deadline " << kDeadlineMs << " ms)");
  CHECK(on_time);
  REQUIRE(ended.get().ok());
  const auto stimuli = sink->stimuli();
  REQUIRE(stimuli.size() == 1);
  CHECK(stimuli[0].record.value("stop_reason", "") == "DEADLINE");
  CHECK(stimuli[0].record.value("steps_done", 0) >= 3);
  CHECK(sink->summary().stop_reason == synthesis::StopReason::kDeadline);
}

TEST_CASE("with always_deliver, a synthesis that never ran still delivers its starting image",
          "[integration][engine][deadline]") {
  // A session block needs a stimulus in every slot: its jobs deliver the starting image (0 steps)
  // rather than none; an abandoned job delivers nothing and ends CANCELLED.
  HeldEngine m;
  const auto t0 = Clock::now();
  auto sink = std::make_shared<RecordingSink>();
  auto ended = sink->ended();
  REQUIRE(m.engine
              .submit(synthesis_job(m, Priority::kCampaign, t0 + milliseconds(200), sink,
                                    /*always_deliver=*/true))
              .ok());
  auto dropped_sink = std::make_shared<RecordingSink>();
  auto dropped_ended = dropped_sink->ended();
  auto dropped = synthesis_job(m, Priority::kCampaign, t0 + milliseconds(60000), dropped_sink);
  REQUIRE(m.engine.submit(dropped).ok());
  dropped->abandon();
  std::this_thread::sleep_for(milliseconds(400));  // past the deadline, the worker still held
  m.gate->open();
  REQUIRE(ended.wait_for(milliseconds(5000)) == std::future_status::ready);
  REQUIRE(ended.get().ok());
  const auto stimuli = sink->stimuli();
  REQUIRE(stimuli.size() == 1);
  CHECK(stimuli[0].record.value("steps_done", -1) == 0);
  CHECK(sink->summary().stop_reason == synthesis::StopReason::kDeadline);
  REQUIRE(dropped_ended.wait_for(milliseconds(5000)) == std::future_status::ready);
  CHECK(dropped_ended.get().code() == StatusCode::kCancelled);
  CHECK(dropped_sink->stimuli().empty());
}

}  // namespace stimloop::engine
