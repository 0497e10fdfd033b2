// write_keras (models/keras_export.h): every network stimloop runs goes out as a .keras file that
// stimloop's own loader reads back to the same op chain (bit-exact weights) and the same outputs
// on the CPU backend, with the Keras layer classes and names a Keras user expects. Covers the
// demo models, the small graph using every loader option, calibrated channels of both readout
// forms, and one compact and one shared published model when ../shared/v4 is present.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "models/compile_network.h"
#include "models/demo_model.h"
#include "models/keras_archive.h"
#include "models/keras_export.h"
#include "models/keras_import.h"
#include "models/preprocess.h"
#include "server/sessions/readout_model.h"
#include "tests/support/keras_writer.h"
#include "tests/support/test_data.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using nlohmann::json;
using namespace stimloop;

namespace {

std::vector<float> forward(const Model& model, int n, std::uint32_t seed) {
  const Network& net = *model.network;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pixel(0, 255);
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(n) * net.input_size());
  for (auto& v : raw) v = static_cast<std::uint8_t>(pixel(rng));
  const std::vector<float> input = recenter_rgb8(raw, model.channel_means);
  auto backend = make_cpu_backend();
  auto resident = backend->upload(model.network);
  REQUIRE(resident.ok());
  std::vector<float> out(static_cast<std::size_t>(n * net.num_outputs()));
  const Status status = (*resident)->forward(input, n, out);
  REQUIRE(status.ok());
  return out;
}

// The Keras layers of a written file as (class_name, name), InputLayer excluded.
std::vector<std::pair<std::string, std::string>> written_layers(const std::string& path) {
  auto archive = read_keras_archive(path, ImportLimits{});
  REQUIRE(archive.ok());
  const json config = json::parse(archive->config_json);
  std::vector<std::pair<std::string, std::string>> layers;
  for (const auto& l : config.at("config").at("layers")) {
    if (l.at("class_name") == "InputLayer") continue;
    layers.emplace_back(l.at("class_name").get<std::string>(),
                        l.at("config").at("name").get<std::string>());
  }
  return layers;
}

// What write_keras should emit for a loaded graph: BatchNorm is folded away and linear
// activations vanish; everything else keeps its class (and, Flatten aside, its name).
std::vector<std::pair<std::string, std::string>> expected_layers(const KerasGraph& graph) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& l : graph.layers) {
    if (l.type == KerasLayerType::kBatchNormalization) continue;
    if (l.type == KerasLayerType::kActivation && !l.relu) continue;
    out.emplace_back(l.class_name, l.type == KerasLayerType::kFlatten ? "" : l.name);
  }
  return out;
}

// An empty expected name matches any: write_keras names the Flattens it adds itself.
void check_same_names(const std::vector<std::pair<std::string, std::string>>& got,
                      const std::vector<std::pair<std::string, std::string>>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("layer " << i << ": " << got[i].first << " '" << got[i].second << "'");
    CHECK(got[i].first == want[i].first);
    if (!want[i].second.empty()) CHECK(got[i].second == want[i].second);
  }
}

// Writes `model`, reloads it, and checks the op chain and the outputs. Returns the written path.
std::string round_trip(const Model& model, const std::string& name) {
  const std::string path = test::scratch_dir("keras_export_" + name) + "/" + name + ".keras";
  const Status written = write_keras(model, path);
  INFO(written.to_string());
  REQUIRE(written.ok());
  auto loaded = load_keras_model(path);
  INFO((loaded.ok() ? "" : loaded.status().to_string()));
  REQUIRE(loaded.ok());
  const Network& a = *model.network;
  const Network& b = *(*loaded)->network;
  CHECK(std::tie(a.in_h, a.in_w, a.in_c) == std::tie(b.in_h, b.in_w, b.in_c));
  REQUIRE(a.layers.size() == b.layers.size());
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    const LayerParams &p = a.layers[i].params, &q = b.layers[i].params;
    INFO("op " << i << " '" << a.layers[i].name << "'");
    CHECK(p.kind == q.kind);
    CHECK(std::tie(p.in_h, p.in_w, p.in_c, p.out_h, p.out_w, p.out_c) ==
          std::tie(q.in_h, q.in_w, q.in_c, q.out_h, q.out_w, q.out_c));
    CHECK(std::tie(p.k_h, p.k_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left) ==
          std::tie(q.k_h, q.k_w, q.stride_h, q.stride_w, q.pad_top, q.pad_left));
    CHECK(p.has_bias == q.has_bias);
    CHECK(p.relu == q.relu);
    CHECK(a.layers[i].weights == b.layers[i].weights);  // float32 out, float32 in: bit-exact
    CHECK(a.layers[i].bias == b.layers[i].bias);
  }
  const std::vector<float> want = forward(model, 3, 11);
  const std::vector<float> got = forward(**loaded, 3, 11);
  REQUIRE(want.size() == got.size());
  double scale = 0.0, worst = 0.0;
  for (float v : want) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  for (std::size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(want[i]) - got[i]));
  }
  INFO("max |difference| " << worst << " of output scale " << scale);
  CHECK(scale > 0.0);
  CHECK(worst <= 1e-5 * scale);
  // Atomic: nothing but the file itself is left in the directory.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(fs::path(path).parent_path())) {
    ++entries;
  }
  CHECK(entries == 1);
  return path;
}

sessions::ChannelFit random_fit(sessions::ReadoutForm form, const sessions::FeatureShape& s,
                                std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto values = [&](std::int64_t n, float scale) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = scale * normal(rng);
    return v;
  };
  sessions::ChannelFit fit;
  fit.form = form;
  if (form == sessions::ReadoutForm::kRidge) {
    fit.weights = values(s.size(), 1e-3f);
  } else {
    fit.feature_weights = values(s.c, 0.1f);
    fit.spatial_mask = values(std::int64_t{s.h} * s.w, 0.05f);
  }
  fit.bias = 2.5;
  return fit;
}

}  // namespace

TEST_CASE("write_keras round-trips the demo models", "[keras_export]") {
  for (const DemoKind kind : {DemoKind::kSingle, DemoKind::kPopulation}) {
    const auto model = demo_model(kind);
    INFO(model->info.id);
    const std::string path = round_trip(*model, model->info.id);
    check_same_names(written_layers(path), expected_layers(build_demo_graph(kind)));
  }
}

TEST_CASE("write_keras round-trips every layer option the loader takes", "[keras_export]") {
  // Valid padding, 3x2 kernel, strides 2x1, a DepthwiseConv2D without bias before a
  // SeparableConv2D (two depthwise ops in a row: only the second pairs with its pointwise).
  const KerasGraph graph = test::small_keras_graph();
  auto network = compile_network(graph);
  REQUIRE(network.ok());
  Model model;
  model.network = std::make_shared<const Network>(std::move(network).value());
  const std::string path = round_trip(model, "small");
  auto want = expected_layers(graph);
  for (auto& l : want) {
    if (l.first == "Activation") l.second.clear();  // "act0": not the "<conv>_act" convention
  }
  check_same_names(written_layers(path), want);
  auto archive = read_keras_archive(path, ImportLimits{});
  REQUIRE(archive.ok());
  json config = json::parse(archive->config_json);
  CHECK(test::config_layer(config, "c0").at("config").at("padding") == "valid");
  CHECK(test::config_layer(config, "dw").at("config").at("use_bias") == false);
  CHECK_FALSE(config.contains("compile_config"));  // loads uncompiled: no optimizer to restore
}

TEST_CASE("write_keras round-trips calibrated channels of both readout forms", "[keras_export]") {
  const auto base = demo_model(DemoKind::kPopulation);
  auto features = sessions::split_at_readout(*base);
  REQUIRE(features.ok());
  std::vector<std::pair<std::string, std::string>> prefix =
      expected_layers(build_demo_graph(DemoKind::kPopulation));
  while (prefix.back().first != "Activation") prefix.pop_back();  // up to the last ReLU

  SECTION("ridge: Flatten + Dense over the features") {
    const auto model = sessions::calibrated_model(
        *base, *features, random_fit(sessions::ReadoutForm::kRidge, features->shape, 3), "s1/ch0",
        "ridge");
    auto want = prefix;
    want.insert(want.end(), {{"Flatten", ""}, {"Dense", "calibrated_dense"}});
    check_same_names(written_layers(round_trip(*model, "ridge")), want);
  }
  SECTION("factorized: 1x1 Conv2D, spatial DepthwiseConv2D, Flatten") {
    const auto model = sessions::calibrated_model(
        *base, *features, random_fit(sessions::ReadoutForm::kFactorized, features->shape, 4),
        "s1/ch1", "factorized");
    auto want = prefix;
    want.insert(want.end(), {{"Conv2D", "calibrated_features"},
                             {"DepthwiseConv2D", "calibrated_spatial_mask"},
                             {"Flatten", ""}});
    const std::string path = round_trip(*model, "factorized");
    check_same_names(written_layers(path), want);
    auto archive = read_keras_archive(path, ImportLimits{});
    REQUIRE(archive.ok());
    json config = json::parse(archive->config_json);
    const json& mask = test::config_layer(config, "calibrated_spatial_mask").at("config");
    CHECK(mask.at("padding") == "valid");
    CHECK(mask.at("kernel_size") == json::array({features->shape.h, features->shape.w}));
    CHECK(test::config_layer(config, "calibrated_features").at("config").at("use_bias") == false);
  }
}

TEST_CASE("write_keras refuses what a .keras file cannot say", "[keras_export]") {
  const std::string dir = test::scratch_dir("keras_export_refusals");
  const auto demo = demo_model();
  SECTION("padding that is neither 'same' nor 'valid'") {
    auto net = std::make_shared<Network>(*demo->network);
    net->layers[0].params.pad_top += 1;
    Model model;
    model.network = net;
    const Status status = write_keras(model, dir + "/bad.keras");
    CHECK(status.code() == StatusCode::kUnimplemented);
    CHECK_THAT(status.message(), Contains(net->layers[0].name) && Contains("padding"));
  }
  SECTION("channel means other than the V4 ones") {
    Model model = *demo;
    model.channel_means[1] += 1.0f;
    CHECK(write_keras(model, dir + "/means.keras").code() == StatusCode::kUnimplemented);
  }
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++entries;
  CHECK(entries == 0);  // no temporary file left behind
}

TEST_CASE("write_keras round-trips published compact and shared models", "[keras_export]") {
  const auto v4 = test::v4_data_dir();
  if (!v4) {
    test::print_skip("keras_export published models");
    return;
  }
  for (const std::string file : {"/compact_models/compact_model_190923_neuron0.keras",
                                 "/shared_compact_models/shared_compact_model_5filters.keras"}) {
    INFO(file);
    auto graph = load_keras_graph(*v4 + file);
    REQUIRE(graph.ok());
    auto model = load_keras_model(*v4 + file);
    REQUIRE(model.ok());
    const std::string path = round_trip(**model, fs::path(file).stem().string());
    check_same_names(written_layers(path), expected_layers(*graph));
  }
}
