// Prepared-ahead blocks: once a SYNTHESIZE block is handed out, the server starts the next
// block's syntheses in the background; the next NextBlock asking for the same collects them.
// Checked: a prepared stimulus is byte for byte the one a fresh block makes (same plan, all
// steps done); a refit that changes the readout past prepared_min_agreement restarts them, one that
// does not keeps them (their predictions then come from the current fit); another strategy
// discards them; and a deadline holds while they are still running.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>

#include "tests/integration/server_fixture.h"
#include "tests/integration/session_test_support.h"

using namespace stimloop;
using namespace stimloop::testing;
namespace v1 = stimloop::v1;

namespace {

// Opens `id` and calibrates it on two seeded POOL blocks of 4 (the same images for any id).
void open_calibrated(client::StimloopClient& client, const std::string& id,
                     double prepared_min_agreement) {
  auto open = open_request(id);
  open.mutable_calibration()->set_prepared_min_agreement(prepared_min_agreement);
  REQUIRE(client.open_session(open).ok());
  for (int b = 0; b < 2; ++b) {
    auto request = block_request(id, 4, "pool" + std::to_string(b));
    request.mutable_strategy()->set_seed(11 + b);
    auto block = client.next_block(request);
    REQUIRE(block.ok());
    REQUIRE(client.report_responses(color_report(id, *block)).ok());
  }
}

v1::NextBlockRequest synth_request(const std::string& session, int steps, bool prepare = true) {
  auto r = block_request(session, 2, "");
  r.mutable_strategy()->set_kind(v1::SYNTHESIZE);
  r.mutable_strategy()->set_steps(steps);
  r.mutable_strategy()->set_seed(5);
  r.set_no_prepare_next(!prepare);
  return r;
}

// Every stimulus's predictions equal Predict of the session model on its image now.
void check_current_predictions(client::StimloopClient& client, const std::string& session,
                               const v1::Block& block) {
  for (const auto& st : block.stimuli()) {
    v1::PredictRequest check;
    check.add_model_ids(session);
    *check.add_images() = st.image();
    auto live = client.predict(check);
    REQUIRE(live.ok());
    REQUIRE(st.predicted_size() == 2);
    for (int c = 0; c < 2; ++c) {
      CHECK(std::abs(live->results(0).responses(c) - st.predicted(c)) <=
            1e-3 * (1 + std::abs(st.predicted(c))));
    }
  }
}

}  // namespace

TEST_CASE("sessions: prepared-ahead blocks", "[sessions]") {
  auto options = TestServer::default_options();
  options.pools = {"demo=" + make_session_pool("prepared-pool")};
  auto server = TestServer::start(options);
  auto client = server->client();

  SECTION("a prepared stimulus is the one a fresh block makes, with every step done") {
    open_calibrated(*client, "prep", 0.0);
    open_calibrated(*client, "fresh", 0.0);
    for (const char* id : {"prep", "fresh"}) {
      auto first = client->next_block(synth_request(id, 30, std::string(id) == "prep"));
      REQUIRE(first.ok());
      CHECK(first->prepared_stimuli() == 0);  // nothing was prepared before the first
    }
    // No deadline: the prepared jobs run to their last step before the block is made.
    auto prepared = client->next_block(synth_request("prep", 30));
    auto fresh = client->next_block(synth_request("fresh", 30, false));
    REQUIRE(prepared.ok());
    REQUIRE(fresh.ok());
    CHECK(prepared->prepared_stimuli() == 2);
    CHECK(fresh->prepared_stimuli() == 0);
    REQUIRE(prepared->stimuli_size() == 2);
    for (int i = 0; i < 2; ++i) {
      CHECK(prepared->stimuli(i).prepared());
      CHECK_FALSE(fresh->stimuli(i).prepared());
      CHECK(prepared->stimuli(i).target_channel() == fresh->stimuli(i).target_channel());
      CHECK(prepared->stimuli(i).image().data() == fresh->stimuli(i).image().data());
      CHECK(prepared->stimuli(i).image_sha256() == fresh->stimuli(i).image_sha256());
      CHECK_THAT(prepared->stimuli(i).record_json(),
                 Catch::Matchers::Contains("\"steps_done\":30"));
    }
    CHECK(prepared->stop_reason() == "COMPLETED");
    check_current_predictions(*client, "prep", *prepared);
  }

  SECTION("a refit that moves the readout restarts them; one that agrees keeps them") {
    open_calibrated(*client, "strict", 1.0);    // any movement restarts
    open_calibrated(*client, "lenient", -1.0);  // never restarts
    for (const char* id : {"strict", "lenient"}) {
      INFO(id);
      auto block = client->next_block(synth_request(id, 20));
      REQUIRE(block.ok());
      auto reported = client->report_responses(color_report(id, *block));
      REQUIRE(reported.ok());
      const bool strict = std::string(id) == "strict";
      CHECK(reported->prepared_invalidated() == (strict ? 2 : 0));
      for (const auto& ch : reported->calibration().channels()) {
        CHECK(std::isfinite(ch.agreement_with_previous()));
        CHECK(ch.agreement_with_previous() <= 1.0 + 1e-9);
      }
      auto next = client->next_block(synth_request(id, 20));
      REQUIRE(next.ok());
      CHECK(next->prepared_stimuli() == 2);  // restarted on the new fit, or kept
      // Kept ones were made on the old fit: their predictions are recomputed on the current one.
      check_current_predictions(*client, id, *next);
    }
  }

  SECTION("another strategy discards them, and prepares nothing") {
    open_calibrated(*client, "other", 0.0);
    REQUIRE(client->next_block(synth_request("other", 20)).ok());
    auto pool = client->next_block(block_request("other", 2, ""));
    REQUIRE(pool.ok());
    CHECK(pool->prepared_stimuli() == 0);
    auto after_pool = client->next_block(synth_request("other", 20));
    REQUIRE(after_pool.ok());
    CHECK(after_pool->prepared_stimuli() == 0);
    // Other steps: another plan, not what was prepared.
    auto other_steps = client->next_block(synth_request("other", 21));
    REQUIRE(other_steps.ok());
    CHECK(other_steps->prepared_stimuli() == 0);
  }

  SECTION("the deadline holds while the prepared syntheses are still running") {
    open_calibrated(*client, "deadline", 0.0);
    auto request = synth_request("deadline", 1'000'000);
    request.set_deadline_ms(300);
    REQUIRE(client->next_block(request).ok());
    const auto t0 = std::chrono::steady_clock::now();
    auto next = client->next_block(request);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(next.ok());
    CHECK(next->prepared_stimuli() == 2);
    CHECK(next->stop_reason() == "DEADLINE");
    // Generous for a loaded CI machine; the point is that it did not wait for a million steps.
    CHECK(ms < 3000);
  }
}
