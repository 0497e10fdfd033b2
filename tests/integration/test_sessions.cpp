// The Sessions service end to end on an in-process server: idempotent open, blocks and their
// retries, reports (duplicates, conflicts, every kind of bad trial storing nothing), calibration
// installing <session>/<channel> models whose Predict matches the block's predictions, and
// closed sessions.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <thread>

#include "common/image_io.h"
#include "common/npy.h"
#include "kernels/backend.h"
#include "models/keras_import.h"
#include "models/preprocess.h"
#include "tests/integration/server_fixture.h"
#include "tests/integration/session_test_support.h"
#include "tests/support/test_data.h"

using namespace stimloop;
using namespace stimloop::testing;
namespace v1 = stimloop::v1;
using Catch::Matchers::Contains;

namespace {

std::string make_pool() { return make_session_pool("session-pool"); }

}  // namespace

TEST_CASE("sessions: open, blocks, reports, calibration and close", "[sessions]") {
  auto options = TestServer::default_options();
  options.pools = {"demo=" + make_pool()};
  auto server = TestServer::start(options);
  auto client = server->client();

  auto opened = client->open_session(open_request("s1"));
  REQUIRE(opened.ok());
  CHECK(opened->pool_images() == 24);
  CHECK(opened->state() == v1::OPEN);

  SECTION("open is idempotent, a different request for the id is refused") {
    CHECK(client->open_session(open_request("s1")).ok());
    auto other = open_request("s1");
    other.set_rig("another rig");
    auto refused = client->open_session(other);
    CHECK(refused.status().code() == StatusCode::kFailedPrecondition);
  }

  SECTION("bad open requests name their field") {
    auto clash = open_request("demo");
    CHECK_THAT(client->open_session(clash).status().message(), Contains("id of a model"));
    auto r = open_request("s2");
    r.set_pool("nope");
    auto s = client->open_session(r).status();
    CHECK(s.code() == StatusCode::kNotFound);
    CHECK_THAT(s.message(), Contains("pool"));
    r = open_request("s2");
    r.set_base_model("no_such_model");
    s = client->open_session(r).status();
    CHECK(s.code() == StatusCode::kNotFound);
    CHECK_THAT(s.message(), Contains("base_model"));
    r = open_request("bad id!");
    CHECK_THAT(client->open_session(r).status().message(), Contains("session_id"));
    r = open_request("s2");
    r.mutable_channels(1)->set_id("ch0");
    CHECK_THAT(client->open_session(r).status().message(), Contains("channels[1].id"));
    r = open_request("s2");
    r.mutable_calibration()->set_ridge_smoothing(9);
    CHECK_THAT(client->open_session(r).status().message(), Contains("calibration.ridge_smoothing"));
    r.mutable_calibration()->set_ridge_smoothing(1);
    r.mutable_calibration()->set_form(v1::FACTORIZED);
    CHECK_THAT(client->open_session(r).status().message(), Contains("RIDGE readout only"));
    r = open_request("s2");
    r.mutable_calibration()->set_prepared_min_agreement(1.5);
    CHECK_THAT(client->open_session(r).status().message(),
               Contains("calibration.prepared_min_agreement"));
    r.mutable_calibration()->set_prepared_min_agreement(std::nan(""));
    CHECK_THAT(client->open_session(r).status().message(),
               Contains("calibration.prepared_min_agreement"));
    CHECK(client->get_session("s2").status().code() == StatusCode::kNotFound);
  }

  SECTION("a block, its retry, and reports") {
    auto block = client->next_block(block_request("s1", 4, "b0"));
    REQUIRE(block.ok());
    REQUIRE(block->stimuli_size() == 4);
    CHECK(block->calibration_version() == 0);
    CHECK(block->uncalibrated_channels_size() == 2);
    std::set<std::string> pool_images;
    for (const auto& st : block->stimuli()) {
      CHECK(st.origin() == v1::POOL_IMAGE);
      CHECK(st.predicted_size() == 0);
      pool_images.insert(st.pool_image());
    }
    CHECK(pool_images.size() == 4);

    auto again = client->next_block(block_request("s1", 4, "b0"));
    REQUIRE(again.ok());
    CHECK(again->replayed());
    for (int i = 0; i < 4; ++i) {
      CHECK(again->stimuli(i).stimulus_id() == block->stimuli(i).stimulus_id());
      CHECK(again->stimuli(i).image().data() == block->stimuli(i).image().data());
    }

    const std::string first = block->stimuli(0).stimulus_id();
    v1::ReportResponsesRequest report;
    report.set_session_id("s1");
    *report.add_trials() = trial(first, 0, {3, 4});
    auto stored = client->report_responses(report);
    REQUIRE(stored.ok());
    CHECK(stored->stored() == 1);
    auto retried = client->report_responses(report);
    REQUIRE(retried.ok());
    CHECK(retried->stored() == 0);
    CHECK(retried->duplicates() == 1);

    // Each bad report fails naming its field and stores nothing, not even its good trials.
    struct Bad {
      v1::Trial trial;
      StatusCode code;
      const char* field;
    };
    const std::vector<Bad> bad = {
        {trial(first, 0, {3, 5}), StatusCode::kFailedPrecondition, "trials[1]"},
        {trial("unknown", 0, {1, 1}), StatusCode::kInvalidArgument, "trials[1].stimulus_id"},
        {trial(first, 1, {1}), StatusCode::kInvalidArgument, "trials[1]"},
        {trial(first, 1, {1, NAN}), StatusCode::kInvalidArgument, "trials[1].responses[1]"},
        {trial(first, 1, {-1, 1}), StatusCode::kInvalidArgument, "trials[1].responses[0]"},
        {trial(first, 1, {INFINITY, 1}), StatusCode::kInvalidArgument, "trials[1].responses[0]"},
    };
    for (const Bad& b : bad) {
      v1::ReportResponsesRequest r;
      r.set_session_id("s1");
      *r.add_trials() = trial(block->stimuli(1).stimulus_id(), 0, {1, 2});
      *r.add_trials() = b.trial;
      auto s = client->report_responses(r).status();
      INFO(s.to_string());
      CHECK(s.code() == b.code);
      CHECK_THAT(s.message(), Contains(b.field));
    }
    auto info = client->get_session("s1");
    REQUIRE(info.ok());
    CHECK(info->trials() == 1);

    v1::ReportResponsesRequest other_session = report;
    other_session.set_session_id("nope");
    CHECK(client->report_responses(other_session).status().code() == StatusCode::kNotFound);
  }

  SECTION("calibration installs channel models whose Predict matches the block's predictions") {
    auto synth = block_request("s1", 2, "");
    synth.mutable_strategy()->set_kind(v1::SYNTHESIZE);
    CHECK(client->next_block(synth).status().code() == StatusCode::kFailedPrecondition);

    // Responses of two known linear-ish functions of the image: mean red and mean blue.
    for (int b = 0; b < 2; ++b) {
      auto block = client->next_block(block_request("s1", 4, "cal" + std::to_string(b)));
      REQUIRE(block.ok());
      auto reported = client->report_responses(color_report("s1", *block));
      REQUIRE(reported.ok());
      CHECK(reported->calibration().version() == (b == 0 ? 0 : 1));
    }
    auto info = client->get_session("s1");
    REQUIRE(info.ok());
    REQUIRE(info->calibration().channels_size() == 2);
    CHECK(info->calibration().channels(0).calibrated());
    CHECK(info->calibration().channels(0).model_id() == "s1/ch0");

    auto block = client->next_block(block_request("s1", 3, "after"));
    REQUIRE(block.ok());
    CHECK(block->calibration_version() == 1);
    v1::PredictRequest predict;
    predict.add_model_ids("s1/ch0");
    predict.add_model_ids("s1/ch1");
    for (const auto& st : block->stimuli()) *predict.add_images() = st.image();
    auto predicted = client->predict(predict);
    REQUIRE(predicted.ok());
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < 3; ++i) {
        const double live = predicted->results(c).responses(i);
        const double at_block = block->stimuli(i).predicted(c);
        CHECK(std::abs(live - at_block) <= 1e-3 * (1 + std::abs(at_block)));
      }
    }

    // The session's own model answers for every channel at once, as the channel models do.
    CHECK(info->calibration().model_id() == "s1");
    v1::PredictRequest both;
    both.add_model_ids("s1");
    for (const auto& st : block->stimuli()) *both.add_images() = st.image();
    auto together = client->predict(both);
    REQUIRE(together.ok());
    REQUIRE(together->results(0).num_outputs() == 2);
    for (int i = 0; i < 3; ++i) {
      for (int c = 0; c < 2; ++c) {
        const double alone = predicted->results(c).responses(i);
        CHECK(std::abs(together->results(0).responses(i * 2 + c) - alone) <=
              1e-4 * (1 + std::abs(alone)));
      }
    }

    auto made = client->next_block(synth);
    REQUIRE(made.ok());
    REQUIRE(made->stimuli_size() == 2);
    // A synthesized stimulus's predictions come from its own final evaluation on the session
    // model: they match Predict on its image.
    for (const auto& st : made->stimuli()) {
      REQUIRE(st.predicted_size() == 2);
      v1::PredictRequest check;
      check.add_model_ids("s1");
      *check.add_images() = st.image();
      auto live = client->predict(check);
      REQUIRE(live.ok());
      for (int c = 0; c < 2; ++c) {
        CHECK(std::abs(live->results(0).responses(c) - st.predicted(c)) <=
              1e-4 * (1 + std::abs(st.predicted(c))));
      }
    }
    CHECK(made->stimuli(0).origin() == v1::SYNTHESIZED);
    CHECK_FALSE(made->stimuli(0).record_json().empty());
    CHECK(made->stimuli(0).target_channel() != made->stimuli(1).target_channel());

    // The export: plain files, and each channel's .keras gives the live model's outputs.
    auto exported = client->export_session("s1");
    INFO(exported.status().to_string());
    REQUIRE(exported.ok());
    std::set<std::string> files(exported->files().begin(), exported->files().end());
    for (const char* f : {"session.json", "stimuli.csv", "trials.csv", "trials.npy",
                          "models/ch0.keras", "models/ch1.keras"}) {
      CHECK(files.count(f) == 1);
    }
    auto npy = read_npy(exported->directory() + "/trials.npy");
    REQUIRE(npy.ok());
    CHECK(npy->shape == std::vector<std::int64_t>{8, 2});  // the 8 trials reported so far
    auto reloaded = load_keras_model(exported->directory() + "/models/ch1.keras");
    INFO(reloaded.status().to_string());
    REQUIRE(reloaded.ok());
    auto cpu = make_cpu_backend();
    auto net = cpu->upload((*reloaded)->network);
    REQUIRE(net.ok());
    for (int i = 0; i < 3; ++i) {
      const auto& data = block->stimuli(i).image().data();
      auto img = decode_image(std::vector<std::uint8_t>(data.begin(), data.end()));
      REQUIRE(img.ok());
      const auto input = recenter_rgb8(img->pixels, (*reloaded)->channel_means);
      std::vector<float> out(1);
      REQUIRE((*net)->forward(input, 1, out).ok());
      const double live = predicted->results(1).responses(i);
      CHECK(std::abs(out[0] - live) <= 1e-5 * (1 + std::abs(live)));
    }

    // ADEPT picks unshown pool images once the pool's features are cached (in the background).
    auto adept = block_request("s1", 3, "");
    adept.mutable_strategy()->set_kind(v1::ADEPT);
    StatusOr<v1::Block> picked = client->next_block(adept);
    for (int i = 0; i < 100 && !picked.ok() &&
                    picked.status().message().find("still being computed") != std::string::npos;
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      picked = client->next_block(adept);
    }
    INFO(picked.status().to_string());
    REQUIRE(picked.ok());
    REQUIRE(picked->stimuli_size() == 3);
    std::set<std::string> names;
    for (const auto& st : picked->stimuli()) {
      CHECK(st.origin() == v1::POOL_IMAGE);
      CHECK(st.predicted_size() == 2);
      names.insert(st.pool_image());
    }
    CHECK(names.size() == 3);

    // COMMITTEE: unshown pool images where readouts fitted to subsets disagree most.
    auto committee = block_request("s1", 2, "");
    committee.mutable_strategy()->set_kind(v1::COMMITTEE);
    auto asked = client->next_block(committee);
    INFO(asked.status().to_string());
    REQUIRE(asked.ok());
    REQUIRE(asked->stimuli_size() == 2);
    for (const auto& st : asked->stimuli()) {
      CHECK(st.origin() == v1::POOL_IMAGE);
      CHECK(names.count(st.pool_image()) == 0);
    }

    // Full synthesis parameters: Adam with jitter, recorded in the stimulus's record.
    auto adam = block_request("s1", 1, "");
    adam.mutable_strategy()->set_kind(v1::SYNTHESIZE);
    auto* spec = adam.mutable_strategy()->mutable_synthesis();
    spec->set_objective(v1::MAX);
    spec->set_method(v1::ADAM);
    spec->set_steps(5);
    spec->set_jitter(2);
    auto jittered = client->next_block(adam);
    REQUIRE(jittered.ok());
    CHECK_THAT(jittered->stimuli(0).record_json(), Contains("\"jitter\":2"));
    spec->set_objective(v1::POPULATION);
    auto refused = client->next_block(adam).status();
    CHECK(refused.code() == StatusCode::kInvalidArgument);
    CHECK_THAT(refused.message(), Contains("strategy"));
  }

  SECTION("a closed session takes no blocks or reports") {
    auto block = client->next_block(block_request("s1", 2, "c0"));
    REQUIRE(block.ok());
    auto closed = client->close_session("s1");
    REQUIRE(closed.ok());
    CHECK(closed->state() == v1::CLOSED);
    CHECK(client->close_session("s1").ok());
    CHECK(client->next_block(block_request("s1", 2, "c1")).status().code() ==
          StatusCode::kFailedPrecondition);
    v1::ReportResponsesRequest report;
    report.set_session_id("s1");
    *report.add_trials() = trial(block->stimuli(0).stimulus_id(), 0, {1, 1});
    CHECK(client->report_responses(report).status().code() == StatusCode::kFailedPrecondition);
    auto list = client->list_sessions();
    REQUIRE(list.ok());
    CHECK(list->sessions_size() == 1);
  }
}
