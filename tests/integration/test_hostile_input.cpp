// Hostile input stays small: a 100 KB value in any string field of any RPC comes back as an
// error whose message is at most a few hundred characters (gRPC carries it in a header, and a
// client's metadata limit would otherwise break the connection for later calls), and the same
// client keeps working afterwards.
#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "tests/integration/server_fixture.h"
#include "tests/support/test_data.h"

using namespace stimloop;
using namespace stimloop::testing;
namespace v1 = stimloop::v1;

namespace {

constexpr std::size_t kMaxMessage = 600;

const std::string& huge() {
  static const std::string value(100 * 1024, 'x');
  return value;
}

client::CallOptions timed() {
  client::CallOptions call;
  call.timeout = std::chrono::seconds(30);
  return call;
}

v1::OpenSessionRequest open_request(const std::string& id) {
  v1::OpenSessionRequest r;
  r.set_session_id(id);
  r.add_channels()->set_id("ch0");
  r.set_base_model("demo");
  r.set_pool("demo");
  return r;
}

struct HostileCall {
  std::string name;
  std::function<Status(client::StimloopClient&)> run;
  bool model_id = false;  // the huge value is a model id: refused as too long, before any lookup
};

std::vector<HostileCall> hostile_calls() {
  std::vector<HostileCall> calls;
  auto add = [&](std::string name, std::function<Status(client::StimloopClient&)> run) {
    const bool model_id = name.find("model_id") != std::string::npos;
    calls.push_back({std::move(name), std::move(run), model_id});
  };
  const v1::Image image = client::raw_image(test_pixels(0), 112, 112);
  add("GetModel model_id", [](auto& c) { return c.get_model(huge(), timed()).status(); });
  add("Predict model_ids", [image](auto& c) {
    v1::PredictRequest r;
    r.add_model_ids(huge());
    *r.add_images() = image;
    return c.predict(r, timed()).status();
  });
  add("InputGradient model_id", [image](auto& c) {
    v1::InputGradientRequest r;
    r.set_model_id(huge());
    *r.add_images() = image;
    return c.input_gradient(r, timed()).status();
  });
  add("Synthesize model_id", [](auto& c) {
    v1::SynthesizeRequest r;
    r.set_model_id(huge());
    r.mutable_spec()->set_objective(v1::MAX);
    r.mutable_spec()->set_steps(2);
    return c.synthesize(
        r, [](const v1::SynthesisEvent&) {}, timed());
  });
  add("OpenSession session_id",
      [](auto& c) { return c.open_session(open_request(huge()), timed()).status(); });
  add("OpenSession base_model", [](auto& c) {
    auto r = open_request("hostile1");
    r.set_base_model(huge());
    return c.open_session(r, timed()).status();
  });
  add("OpenSession pool", [](auto& c) {
    auto r = open_request("hostile2");
    r.set_pool(huge());
    return c.open_session(r, timed()).status();
  });
  add("OpenSession channel id", [](auto& c) {
    auto r = open_request("hostile3");
    r.mutable_channels(0)->set_id(huge());
    return c.open_session(r, timed()).status();
  });
  add("OpenSession rig", [](auto& c) {
    auto r = open_request("hostile4");
    r.set_rig(huge());
    return c.open_session(r, timed()).status();
  });
  add("NextBlock session_id", [](auto& c) {
    v1::NextBlockRequest r;
    r.set_session_id(huge());
    r.set_count(1);
    return c.next_block(r, timed()).status();
  });
  add("NextBlock block_id", [](auto& c) {
    v1::NextBlockRequest r;
    r.set_session_id("hostile-none");
    r.set_block_id(huge());
    r.set_count(1);
    return c.next_block(r, timed()).status();
  });
  add("NextBlock references", [](auto& c) {
    v1::NextBlockRequest r;
    r.set_session_id("hostile-none");
    r.set_count(1);
    r.mutable_strategy()->add_references(huge());
    return c.next_block(r, timed()).status();
  });
  add("ReportResponses session_id", [](auto& c) {
    v1::ReportResponsesRequest r;
    r.set_session_id(huge());
    return c.report_responses(r, timed()).status();
  });
  add("ReportResponses stimulus_id", [](auto& c) {
    v1::ReportResponsesRequest r;
    r.set_session_id("hostile-none");
    auto* t = r.add_trials();
    t->set_stimulus_id(huge());
    t->add_responses(1.0);
    return c.report_responses(r, timed()).status();
  });
  add("GetSession", [](auto& c) { return c.get_session(huge(), timed()).status(); });
  add("CloseSession", [](auto& c) { return c.close_session(huge(), timed()).status(); });
  add("ExportSession", [](auto& c) { return c.export_session(huge(), timed()).status(); });
  return calls;
}

}  // namespace

TEST_CASE("a 100 KB value in any field comes back truncated and breaks nothing",
          "[hostile][service]") {
  auto server = TestServer::start();
  auto client = server->client();
  v1::PredictRequest good;
  good.add_model_ids("demo");
  *good.add_images() = client::raw_image(test_pixels(1), 112, 112);

  for (const auto& call : hostile_calls()) {
    for (int repeat = 0; repeat < 10; ++repeat) {
      const Status status = call.run(*client);
      INFO(call.name << ": " << status_code_name(status.code()) << " "
                     << status.message().substr(0, 300));
      REQUIRE_FALSE(status.ok());
      CHECK(status.code() != StatusCode::kUnknown);
      CHECK(status.code() != StatusCode::kUnavailable);  // the connection did not break
      CHECK(status.message().size() <= kMaxMessage);
      if (call.model_id) {
        CHECK(status.code() == StatusCode::kInvalidArgument);
        CHECK(status.message().find("longer than 256 bytes") != std::string::npos);
      }
      // And the next call on the same connection is answered normally.
      auto response = client->predict(good, timed());
      REQUIRE(response.ok());
    }
  }
}
