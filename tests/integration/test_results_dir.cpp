// --results-dir: every stimulus is kept as a whole PNG and then its record, names never collide
// (two requests with the same x-request-id keep both), and a save that fails (a full disk) is an
// error the client sees, leaving neither half of the pair.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "common/sha256.h"
#include "tests/integration/server_fixture.h"
#include "tests/support/file_helpers.h"
#include "tests/support/test_data.h"

using namespace stimloop;
using namespace stimloop::testing;
namespace v1 = stimloop::v1;
using Catch::Matchers::Contains;

namespace {

v1::SynthesizeRequest request(int count, int display_size = 0) {
  v1::SynthesizeRequest r;
  r.set_model_id("demo");
  r.mutable_spec()->set_objective(v1::MAX);
  r.mutable_spec()->set_steps(3);
  r.mutable_spec()->set_count(count);
  r.mutable_spec()->set_display_size(display_size);
  return r;
}

struct Received {
  Status status;
  std::vector<std::string> records;  // record_json of each STIMULUS event
};

Received synthesize(client::StimloopClient& c, const v1::SynthesizeRequest& r,
                    const std::string& request_id) {
  client::CallOptions call;
  call.timeout = std::chrono::seconds(60);
  call.request_id = request_id;
  Received out;
  out.status = c.synthesize(
      r,
      [&](const v1::SynthesisEvent& e) {
        if (e.kind() == v1::SynthesisEvent::STIMULUS)
          out.records.push_back(e.stimulus().record_json());
      },
      call);
  return out;
}

}  // namespace

TEST_CASE("results: a record always names a whole PNG, and ids never collide",
          "[results][service]") {
  auto options = TestServer::default_options();
  options.results_dir = test::scratch_dir("results-collide-" + std::to_string(getpid()));
  auto server = TestServer::start(options);
  auto client = server->client();

  const Received first = synthesize(*client, request(2), "same-id");
  const Received second = synthesize(*client, request(2), "same-id");
  REQUIRE(first.status.ok());
  REQUIRE(second.status.ok());
  CHECK(test::names_in(options.results_dir) ==
        std::vector<std::string>{"same-id_0.2.json", "same-id_0.2.png", "same-id_0.json",
                                 "same-id_0.png", "same-id_1.2.json", "same-id_1.2.png",
                                 "same-id_1.json", "same-id_1.png"});
  std::set<std::string> pngs;
  for (const auto& name : test::names_in(options.results_dir)) {
    if (name.size() < 5 || name.substr(name.size() - 5) != ".json") continue;
    const auto record =
        nlohmann::json::parse(test::read_file_text(options.results_dir + "/" + name));
    const std::string png = record.at("png");
    CHECK(pngs.insert(png).second);
    const std::string bytes = test::read_file_text(png);
    CHECK(sha256_hex(std::vector<std::uint8_t>(bytes.begin(), bytes.end())) ==
          record.at("png_sha256").get<std::string>());
    CHECK(record.at("request_id") == "same-id");
  }
  CHECK(pngs.size() == 4);
}

TEST_CASE("results: a failed save is an error the client sees, and leaves no half pair",
          "[results][service]") {
  auto options = TestServer::default_options();
  options.results_dir = test::scratch_dir("results-full-" + std::to_string(getpid()));
  auto server = TestServer::start(options);
  auto client = server->client();
  Received got;
  {
    // A 1024 x 1024 display copy is far larger than 16 KiB.
    test::ScopedFileSizeLimit limit(16 * 1024);
    got = synthesize(*client, request(2, 1024), "full-disk");
  }
  INFO(got.status.to_string());
  CHECK(got.status.code() == StatusCode::kResourceExhausted);
  CHECK_THAT(got.status.message(), Contains("results directory"));
  CHECK(got.records.size() == 2);                      // the client still has what was made
  CHECK(test::names_in(options.results_dir).empty());  // no PNG, record or temporary

  // The same server saves again once there is room.
  const Received again = synthesize(*client, request(1, 1024), "full-disk");
  CHECK(again.status.ok());
  CHECK(test::names_in(options.results_dir) ==
        std::vector<std::string>{"full-disk_0.json", "full-disk_0.png"});
}
