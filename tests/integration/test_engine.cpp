// The engine without gRPC: priority order, step-level preemption, batching of queued predict
// jobs, bounded queues, shutdown. A "gate" job holds the worker so that the queue's contents at
// the moment it is released are known exactly.
#include <catch2/catch.hpp>
#include <condition_variable>
#include <future>
#include <mutex>

#include "models/preprocess.h"
#include "server/engine/engine.h"
#include "server/engine/model_registry.h"
#include "server/engine/predict_job.h"
#include "tests/integration/gate_job.h"
#include "tests/integration/server_fixture.h"

namespace stimloop::engine {
namespace {

// Records the order in which jobs ran; runs `slices` slices before finishing.
class TraceJob : public Job {
 public:
  TraceJob(std::string name, Priority p, int slices, std::vector<std::string>& trace,
           std::mutex& mutex)
      : Job(name, p, std::nullopt), slices_(slices), trace_(trace), mutex_(mutex) {}
  SliceResult run(std::vector<std::shared_ptr<Job>>&) override {
    std::lock_guard lock(mutex_);
    trace_.push_back(request_id());
    return {--slices_ == 0, 1};
  }
  void fail(const Status&) override {}

 private:
  int slices_;
  std::vector<std::string>& trace_;
  std::mutex& mutex_;
};

}  // namespace

TEST_CASE("engine runs the most urgent job first and preempts between slices",
          "[integration][engine]") {
  EngineMetrics metrics;
  Engine engine({}, metrics);
  auto gate = std::make_shared<GateJob>(Priority::kCampaign);
  REQUIRE(engine.submit(gate).ok());
  gate->wait_running();
  std::vector<std::string> trace;
  std::mutex mutex;
  std::promise<void> all_done;
  REQUIRE(
      engine.submit(std::make_shared<TraceJob>("c1", Priority::kCampaign, 3, trace, mutex)).ok());
  REQUIRE(
      engine.submit(std::make_shared<TraceJob>("c2", Priority::kCampaign, 3, trace, mutex)).ok());
  REQUIRE(engine.submit(std::make_shared<TraceJob>("i1", Priority::kInteractive, 2, trace, mutex))
              .ok());
  REQUIRE(engine.submit(std::make_shared<TraceJob>("r1", Priority::kRig, 2, trace, mutex)).ok());
  gate->open();
  // Rig first (both slices), then interactive, then the campaigns round-robin.
  const std::vector<std::string> expected = {"r1", "r1", "i1", "i1", "c1",
                                             "c2", "c1", "c2", "c1", "c2"};
  // The queues are empty once the last slice has started, not finished: wait for its trace entry
  // and for the engine to count its step (added after the slice returns).
  auto settled = [&] {
    std::lock_guard lock(mutex);
    return trace.size() >= expected.size() && metrics.steps_total() >= 10;
  };
  for (int i = 0; i < 400 && !settled(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(engine.queue_depths() == std::array<int, 3>{0, 0, 0});
  std::lock_guard lock(mutex);
  CHECK(trace == expected);
  CHECK(metrics.steps_total() == 10);
}

TEST_CASE("engine refuses work beyond a full queue and fails queued jobs on shutdown",
          "[integration][engine]") {
  EngineMetrics metrics;
  Engine engine({/*max_jobs_per_priority=*/2, 256}, metrics);
  auto gate = std::make_shared<GateJob>(Priority::kCampaign);
  REQUIRE(engine.submit(gate).ok());
  gate->wait_running();
  std::vector<std::string> trace;
  std::mutex mutex;
  REQUIRE(
      engine.submit(std::make_shared<TraceJob>("c1", Priority::kCampaign, 1, trace, mutex)).ok());
  const Status full =
      engine.submit(std::make_shared<TraceJob>("c2", Priority::kCampaign, 1, trace, mutex));
  CHECK(full.code() == StatusCode::kResourceExhausted);
  CHECK_THAT(full.message(), Catch::Contains("campaign queue is full"));
  // Another priority has its own queue.
  CHECK(engine.submit(std::make_shared<TraceJob>("r1", Priority::kRig, 1, trace, mutex)).ok());
  gate->open();
}

TEST_CASE("queued predict jobs on the same model run as one batch with per-job results",
          "[integration][engine]") {
  auto backend = make_cpu_backend();
  auto registry = ModelRegistry::load({}, true, *backend);
  REQUIRE(registry.ok());
  auto model = (*registry)->find("demo_population");
  REQUIRE(model.ok());
  const ModelInfo& info = (*model)->model->info;

  EngineMetrics metrics;
  Engine engine({}, metrics);
  auto gate = std::make_shared<GateJob>(Priority::kRig);
  REQUIRE(engine.submit(gate).ok());
  gate->wait_running();

  constexpr int kJobs = 6;
  std::vector<std::promise<StatusOr<PredictResult>>> results(kJobs);
  std::vector<std::vector<std::uint8_t>> images;
  for (int j = 0; j < kJobs; ++j) {
    const int n = 1 + j % 3;  // 1, 2 or 3 images per job
    std::vector<std::uint8_t> raw;
    for (int i = 0; i < n; ++i) {
      auto p = stimloop::testing::test_pixels(10 * j + i);
      raw.insert(raw.end(), p.begin(), p.end());
    }
    images.push_back(raw);
    auto job = std::make_shared<PredictJob>(
        "p" + std::to_string(j), j % 2 ? Priority::kInteractive : Priority::kCampaign, std::nullopt,
        std::vector<ResidentModelPtr>{*model}, raw, n,
        [&results, j](StatusOr<PredictResult> r) { results[j].set_value(std::move(r)); });
    REQUIRE(engine.submit(job).ok());
  }
  gate->open();
  for (int j = 0; j < kJobs; ++j) {
    auto r = results[j].get_future().get();
    REQUIRE(r.ok());
    // Each job's rows equal a forward pass of its own images alone.
    const int n = static_cast<int>(images[j].size() / (112 * 112 * 3));
    std::vector<float> expected(static_cast<std::size_t>(n) * info.num_outputs);
    REQUIRE((*model)
                ->network
                ->forward(recenter_rgb8(images[j], (*model)->model->channel_means), n, expected)
                .ok());
    REQUIRE(r->responses.size() == 1);
    CHECK(r->responses[0] == expected);
  }
  CHECK(metrics.batched() == kJobs - 1);  // one batch: the first job plus five companions
}

}  // namespace stimloop::engine
