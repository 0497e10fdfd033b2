// export_session (server/sessions/session_export.h) on a session built by hand: every file is
// there and readable by plain parsers (CSV per RFC 4180, .npy, PNG bytes, JSON), the calibrated
// channels' .keras files reload to the same outputs, and the refusals (existing directory, a
// leftover .partial, unsafe ids, an image that does not match its digest) leave nothing behind.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "common/image_io.h"
#include "common/npy.h"
#include "common/sha256.h"
#include "kernels/backend.h"
#include "models/demo_model.h"
#include "models/keras_import.h"
#include "models/preprocess.h"
#include "server/sessions/readout_model.h"
#include "server/sessions/session_export.h"
#include "tests/support/keras_writer.h"
#include "tests/support/test_data.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using nlohmann::json;
using namespace stimloop;
using namespace stimloop::sessions;

namespace {

// RFC 4180 records: quoted fields may hold commas, doubled quotes and line breaks.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1, std::vector<std::string>(1));
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        rows.back().back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        rows.back().back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().emplace_back();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      ++i;
      rows.emplace_back(1);
    } else {
      rows.back().back() += c;
    }
  }
  if (rows.back().size() == 1 && rows.back()[0].empty()) rows.pop_back();  // after the last CRLF
  return rows;
}

std::string read_text(const std::string& path) {
  const auto bytes = test::read_bytes(path);
  return {bytes.begin(), bytes.end()};
}

std::vector<float> forward(const Model& model, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pixel(0, 255);
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(2 * model.network->input_size()));
  for (auto& v : raw) v = static_cast<std::uint8_t>(pixel(rng));
  auto resident = make_cpu_backend()->upload(model.network);
  REQUIRE(resident.ok());
  std::vector<float> out(static_cast<std::size_t>(2 * model.network->num_outputs()));
  REQUIRE((*resident)->forward(recenter_rgb8(raw, model.channel_means), 2, out).ok());
  return out;
}

struct Fixture {
  ExportInput input;
  std::map<std::string, std::vector<std::uint8_t>> images;  // by SHA-256
};

std::shared_ptr<const Model> channel_model(ReadoutForm form, std::uint32_t seed) {
  static const auto base = demo_model(DemoKind::kPopulation);
  auto features = split_at_readout(*base);
  REQUIRE(features.ok());
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ChannelFit fit;
  fit.form = form;
  const FeatureShape& s = features->shape;
  auto fill = [&](std::vector<float>& v, std::int64_t n, float scale) {
    for (std::int64_t i = 0; i < n; ++i) v.push_back(scale * normal(rng));
  };
  if (form == ReadoutForm::kRidge) {
    fill(fit.weights, s.size(), 1e-3f);
  } else {
    fill(fit.feature_weights, s.c, 0.1f);
    fill(fit.spatial_mask, std::int64_t{s.h} * s.w, 0.05f);
  }
  fit.bias = 1.5;
  return calibrated_model(*base, *features, fit, "s1/ch", "test");
}

std::shared_ptr<Fixture> make_fixture() {
  auto f = std::make_shared<Fixture>();
  ExportInput& in = f->input;
  in.config.session_id = "s1";
  in.config.rig = "rig A";
  in.config.channels = {{"ch0", "electrode 0"}, {"ch1", "electrode \"1\""}};
  in.config.base_model = kDemoPopulationModelId;
  in.config.pool = "demo";
  in.config.notes = "notes, with a comma";
  in.row = {"s1", "{}", false, 1700000000000, 0, 2, 4, 6};
  const std::vector<std::string> sources = {
      R"({"pool": "demo", "pool_image": "img, \"a\".png"})",
      R"({"pool": "demo", "pool_image": "b.png"})",
      R"({"model_id": "s1/session", "output_index": 1, "channel_id": "ch1", "record": {}})",
      "not json"};
  const std::vector<std::string> origins = {"pool", "pool", "synthesized", "reference"};
  for (int i = 0; i < 4; ++i) {
    Rgb8Image img{6, 5, std::vector<std::uint8_t>(90, static_cast<std::uint8_t>(40 * i + 3))};
    auto png = encode_png(img);
    REQUIRE(png.ok());
    const std::string sha = sha256_hex(*png);
    f->images[sha] = *png;
    StimulusRow s;
    s.stimulus_id = "b" + std::to_string(i / 2) + "-s" + std::to_string(i % 2);
    s.block_index = i / 2;
    s.position = i % 2;
    s.origin = origins[i];
    s.source_json = sources[i];
    s.image_sha256 = sha;
    if (i >= 2) s.predicted = {0.1 * i, 2.5 + i};  // calibrated from block 1 on
    in.stimuli.push_back(s);
  }
  for (int t = 0; t < 6; ++t) {
    TrialRow row;
    row.stimulus_id = in.stimuli[t % 4].stimulus_id;
    row.repeat_index = t / 4;
    row.valid = t != 5;
    row.responses = {1.0 * t, 0.25 + t};
    row.received_unix_ms = 1700000000100 + t;
    in.trials.push_back(row);
  }
  in.fits = {{1, "ch0", R"({"form": "ridge", "cv_r": 0.5})", 1700000000200},
             {1, "ch1", R"({"form": "factorized", "cv_r": 0.25})", 1700000000200}};
  in.calibration_json = R"({"version": 1, "channels": [{"id": "ch0", "cv_r": 0.5}]})";
  in.image = [f = f.get()](const std::string& sha) -> StatusOr<std::vector<std::uint8_t>> {
    auto it = f->images.find(sha);
    if (it == f->images.end()) return not_found("no image " + sha);
    return it->second;
  };
  in.channel_models = {{"ch0", channel_model(ReadoutForm::kRidge, 5)},
                       {"ch1", channel_model(ReadoutForm::kFactorized, 6)}};
  return f;
}

int entries(const std::string& dir) {
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("export_session writes a directory readable without stimloop", "[session_export]") {
  const auto f = make_fixture();
  const std::string root = test::scratch_dir("session_export");
  const std::string dir = root + "/s1";
  auto summary = export_session(f->input, dir);
  INFO((summary.ok() ? "" : summary.status().to_string()));
  REQUIRE(summary.ok());
  CHECK(summary->directory == dir);
  CHECK(entries(root) == 1);  // no .partial left
  for (const std::string name : {"session.json", "stimuli.csv", "stimuli_sources.jsonl",
                                 "trials.csv", "trials.npy", "README.txt", "images/b0-s0.png",
                                 "images/b1-s1.png", "models/ch0.keras", "models/ch1.keras"}) {
    INFO(name);
    CHECK(std::find(summary->files.begin(), summary->files.end(), name) != summary->files.end());
  }
  for (const auto& name : summary->files) {
    INFO(name);
    CHECK(fs::is_regular_file(dir + "/" + name));
    CHECK(fs::file_size(dir + "/" + name) > 0);
  }
  CHECK(summary->files.size() == 6 + 4 + 2);

  const auto stimuli = parse_csv(read_text(dir + "/stimuli.csv"));
  REQUIRE(stimuli.size() == 5);
  CHECK(stimuli[0] == std::vector<std::string>{"stimulus_id", "block_index", "position", "origin",
                                               "pool_image", "target_channel", "image_sha256",
                                               "predicted_ch0", "predicted_ch1"});
  CHECK(stimuli[1][4] == "img, \"a\".png");  // quoted, quotes doubled, and read back
  CHECK(stimuli[1][7].empty());              // no prediction before the first calibration
  CHECK(stimuli[3] == std::vector<std::string>{"b1-s0", "1", "0", "synthesized", "", "ch1",
                                               f->input.stimuli[2].image_sha256, "0.2", "4.5"});
  CHECK(stimuli[4][4].empty());  // unparseable provenance: empty fields, no failure

  const auto trials = parse_csv(read_text(dir + "/trials.csv"));
  REQUIRE(trials.size() == 7);
  CHECK(trials[0] == std::vector<std::string>{"stimulus_id", "repeat_index", "valid",
                                              "received_unix_ms", "ch0", "ch1"});
  CHECK(trials[6] == std::vector<std::string>{"b0-s1", "1", "0", "1700000000105", "5", "5.25"});

  auto npy = read_npy(dir + "/trials.npy");
  REQUIRE(npy.ok());
  CHECK(npy->dtype == NpyDtype::kFloat64);
  CHECK(npy->shape == std::vector<std::int64_t>{6, 2});
  const std::vector<double> values = npy->to_double();
  for (std::size_t t = 0; t < 6; ++t) {
    CHECK(values[2 * t] == f->input.trials[t].responses[0]);
    CHECK(values[2 * t + 1] == f->input.trials[t].responses[1]);
  }

  const json session = json::parse(read_text(dir + "/session.json"));
  CHECK(session.at("config").at("notes") == "notes, with a comma");
  CHECK(session.at("counts").at("trials") == 6);
  CHECK(session.at("counts").at("valid_trials") == 5);
  CHECK(session.at("channels") == json::array({"ch0", "ch1"}));
  CHECK(session.at("calibration").at("version") == 1);
  CHECK(session.at("fits").size() == 2);
  CHECK(session.at("fits")[1].at("summary").at("cv_r") == 0.25);

  for (const auto& s : f->input.stimuli) {
    CHECK(test::read_bytes(dir + "/images/" + s.stimulus_id + ".png") == f->images[s.image_sha256]);
  }
  for (const auto& [id, model] : f->input.channel_models) {
    INFO(id);
    auto loaded = load_keras_model(dir + "/models/" + id + ".keras");
    REQUIRE(loaded.ok());
    const auto want = forward(*model, 3), got = forward(**loaded, 3);
    REQUIRE(want.size() == got.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      CHECK(std::fabs(want[i] - got[i]) <= 1e-5 * std::max(1.0f, std::fabs(want[i])));
    }
  }
  CHECK_THAT(read_text(dir + "/README.txt"), Contains("trials.npy") && Contains("ch0, ch1"));

  // Optional: NumPy itself reads the array (skipped where NumPy is not installed).
  if (std::system("python3 -c 'import numpy' >/dev/null 2>&1") == 0) {
    const std::string command = "python3 -c \"import numpy as np; a = np.load('" + dir +
                                "/trials.npy'); assert a.shape == (6, 2) and a.dtype == np.float64 "
                                "and a[5, 1] == 5.25\"";
    CHECK(std::system(command.c_str()) == 0);
  } else {
    std::cout << "SKIPPED (session_export numpy check): python3 has no numpy\n";
  }

  SECTION("an existing directory is refused and left alone") {
    auto again = export_session(f->input, dir);
    CHECK(again.status().code() == StatusCode::kFailedPrecondition);
    CHECK_THAT(again.status().message(), Contains(dir));
    CHECK(fs::is_regular_file(dir + "/session.json"));
    CHECK(entries(root) == 1);
  }
}

TEST_CASE("export_session refusals leave nothing behind", "[session_export]") {
  const auto f = make_fixture();
  const std::string root = test::scratch_dir("session_export_refusals");
  const std::string dir = root + "/out";
  SECTION("a leftover .partial") {
    fs::create_directory(dir + ".partial");
    auto result = export_session(f->input, dir);
    CHECK(result.status().code() == StatusCode::kFailedPrecondition);
    CHECK_THAT(result.status().message(), Contains(".partial"));
    CHECK(entries(root) == 1);  // the .partial, left alone
    fs::remove(dir + ".partial");
  }
  SECTION("a stimulus id that is not a safe file name") {
    f->input.stimuli[1].stimulus_id = "../escape";
    CHECK(export_session(f->input, dir).status().code() == StatusCode::kInvalidArgument);
  }
  SECTION("an image whose bytes do not match their digest") {
    f->images[f->input.stimuli[2].image_sha256].push_back(0);
    auto result = export_session(f->input, dir);
    CHECK(result.status().code() == StatusCode::kDataLoss);
    CHECK_THAT(result.status().message(), Contains("b1-s0"));
  }
  SECTION("an image the store cannot find") {
    f->input.stimuli[3].image_sha256 = std::string(64, '0');
    CHECK(export_session(f->input, dir).status().code() == StatusCode::kNotFound);
  }
  CHECK(entries(root) == 0);
}
