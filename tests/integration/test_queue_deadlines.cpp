// The case end to end: INTERACTIVE syntheses saturate the engine while CAMPAIGN requests
// with deadlines wait behind them. Each answers by its deadline as the proto promises: a
// synthesis with stop reason DEADLINE, a Predict with DEADLINE_EXCEEDED. (The strict bar,
// deadline + 150 ms, is stimloop-bench-queue-deadline's; margins here suit a loaded machine.)
#include <catch2/catch.hpp>
#include <mutex>
#include <thread>

#include "tests/integration/server_fixture.h"

namespace stimloop::testing {
namespace {

namespace v1 = ::stimloop::v1;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

v1::SynthesizeRequest long_max(v1::Priority priority) {
  v1::SynthesizeRequest r;
  r.set_model_id("demo");
  r.set_priority(priority);
  r.mutable_spec()->set_objective(v1::MAX);
  r.mutable_spec()->set_steps(100000);
  return r;
}

// Interactive syntheses that keep the engine busy until stopped (or for at most 15 s, so that a
// server without queue timers fails the test instead of hanging it).
class Saturation {
 public:
  Saturation(const TestServer& ts, int clients) : contexts_(clients, nullptr) {
    for (int k = 0; k < clients; ++k) {
      threads_.emplace_back([this, &ts, k] {
        auto c = ts.client_in_thread();
        if (!c) return;
        auto request = long_max(v1::INTERACTIVE);
        request.set_deadline_ms(15000);
        client::CallOptions call;
        call.on_context = [this, k](grpc::ClientContext* ctx) {
          std::lock_guard lock(mutex_);
          contexts_[k] = ctx;
        };
        (void)c->synthesize(
            request,
            [this](const v1::SynthesisEvent& e) {
              if (e.kind() == v1::SynthesisEvent::PROGRESS) ++progress_;
            },
            call);
      });
    }
    for (int i = 0; i < 1000 && progress_.load() < 2 * clients; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ~Saturation() {
    {
      std::lock_guard lock(mutex_);
      for (auto* ctx : contexts_) {
        if (ctx != nullptr) ctx->TryCancel();
      }
    }
    for (auto& t : threads_) t.join();
  }
  bool running() const { return progress_.load() > 0; }

 private:
  std::mutex mutex_;
  std::vector<grpc::ClientContext*> contexts_;
  std::vector<std::thread> threads_;
  std::atomic<int> progress_{0};
};

constexpr double kSlackMs = 600;

v1::PredictRequest campaign_predict(double deadline_ms) {
  v1::PredictRequest request;
  request.add_model_ids("demo");
  request.set_priority(v1::CAMPAIGN);
  request.set_deadline_ms(deadline_ms);
  *request.add_images() = client::raw_image(test_pixels(2), 112, 112);
  return request;
}

}  // namespace

TEST_CASE("CAMPAIGN requests behind saturating INTERACTIVE work answer by their deadlines",
          "[integration][rpc][deadline]") {
  auto ts = TestServer::start();
  auto c = ts->client();
  REQUIRE(c->wait_until_serving(std::chrono::seconds(5)).ok());
  Saturation saturation(*ts, 2);
  REQUIRE(saturation.running());

  SECTION("Synthesize: DONE with stop reason DEADLINE and no stimulus") {
    auto request = long_max(v1::CAMPAIGN);
    request.set_deadline_ms(1000);
    std::vector<v1::SynthesisEvent> events;
    const auto t0 = Clock::now();
    const Status s =
        c->synthesize(request, [&](const v1::SynthesisEvent& e) { events.push_back(e); });
    const double ms = ms_since(t0);
    INFO("answered after " << ms << " ms (deadline 1000 ms)");
    REQUIRE(s.ok());
    CHECK(ms < 1000 + kSlackMs);
    REQUIRE(!events.empty());
    CHECK(events.front().kind() == v1::SynthesisEvent::ACCEPTED);
    CHECK(events.back().kind() == v1::SynthesisEvent::DONE);
    CHECK(events.back().stop_reason() == "DEADLINE");
    CHECK(events.back().steps_done() == 0);
    for (const auto& e : events) CHECK(e.kind() != v1::SynthesisEvent::STIMULUS);
  }
  SECTION("Predict: DEADLINE_EXCEEDED") {
    const auto t0 = Clock::now();
    const auto r = c->predict(campaign_predict(500));
    const double ms = ms_since(t0);
    INFO("answered after " << ms << " ms (deadline 500 ms)");
    CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
    CHECK_THAT(r.status().message(), Catch::Contains("campaign queue"));
    CHECK(ms < 500 + kSlackMs);
  }
  SECTION("deadline_ms=1: at once") {
    const auto t0 = Clock::now();
    const auto r = c->predict(campaign_predict(1));
    const double ms = ms_since(t0);
    INFO("answered after " << ms << " ms (deadline 1 ms)");
    CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
    CHECK(ms < 1 + kSlackMs);
  }
}

}  // namespace stimloop::testing
