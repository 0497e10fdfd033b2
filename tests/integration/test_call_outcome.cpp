// The request log and requests_total record the code the client actually got: a stream the
// client cancelled counts as CANCELLED, even though the job itself ended normally (stop reason
// CANCELLED) and the server meant to send OK.
#include <catch2/catch.hpp>
#include <mutex>

#include "tests/integration/server_fixture.h"

namespace stimloop::testing {

namespace v1 = ::stimloop::v1;

TEST_CASE("a stream the client cancelled is counted CANCELLED, not OK", "[integration][rpc]") {
  auto ts = TestServer::start();
  auto c = ts->client();
  v1::SynthesizeRequest request;
  request.set_model_id("demo");
  request.set_priority(v1::INTERACTIVE);
  request.mutable_spec()->set_objective(v1::MAX);
  request.mutable_spec()->set_steps(100000);
  request.set_progress_every(1);
  std::mutex mutex;
  grpc::ClientContext* live = nullptr;
  client::CallOptions call;
  call.on_context = [&](grpc::ClientContext* ctx) {
    std::lock_guard lock(mutex);
    live = ctx;
  };
  bool cancelled = false;
  const Status status = c->synthesize(
      request,
      [&](const v1::SynthesisEvent& e) {
        if (cancelled || e.kind() != v1::SynthesisEvent::PROGRESS || e.steps_done() < 3) return;
        cancelled = true;
        std::lock_guard lock(mutex);
        live->TryCancel();
      },
      call);
  CHECK(status.code() == StatusCode::kCancelled);
  const std::string metrics = ts->scrape_metrics_until(
      "stimloop_requests_total{method=\"Synthesize\",code=\"CANCELLED\"}", 1.0);
  CHECK(metric_value(metrics,
                     "stimloop_requests_total{method=\"Synthesize\",code=\"CANCELLED\"}") == 1);
  CHECK(std::isnan(
      metric_value(metrics, "stimloop_requests_total{method=\"Synthesize\",code=\"OK\"}")));
}

}  // namespace stimloop::testing
