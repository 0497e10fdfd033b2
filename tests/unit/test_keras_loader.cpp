// The .keras loader against synthetic fixtures written at test time (tests/support/keras_writer):
// an exact round trip of the demo model and of a small graph using every supported option, then
// hostile and unsupported files, each of which must fail with a Status that names the problem,
// and finally the published models when ../shared/v4 is present.
#include <sys/resource.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "common/sha256.h"
#include "kernels/backend.h"
#include "models/compile_network.h"
#include "models/demo_model.h"
#include "models/keras_import.h"
#include "tests/support/keras_writer.h"
#include "tests/support/test_data.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using nlohmann::json;
using namespace stimloop;
using namespace stimloop::test;

namespace {

// Runs a compiled network on the CPU backend.
std::vector<float> cpu_forward(const Network& network, const std::vector<float>& images, int n) {
  auto backend = make_cpu_backend();
  auto resident = backend->upload(std::make_shared<const Network>(network));
  REQUIRE(resident.ok());
  std::vector<float> out(static_cast<std::size_t>(n * network.num_outputs()));
  const Status status = (*resident)->forward(images, n, out);
  REQUIRE(status.ok());
  return out;
}

std::vector<float> test_images(const KerasGraph& g, int n) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> pixel(-120.0f, 130.0f);
  std::vector<float> images(static_cast<std::size_t>(n) * g.in_h * g.in_w * g.in_c);
  for (float& v : images) v = pixel(rng);
  return images;
}

void check_same_graph(const KerasGraph& loaded, const KerasGraph& expected) {
  CHECK(loaded.in_h == expected.in_h);
  CHECK(loaded.in_w == expected.in_w);
  CHECK(loaded.in_c == expected.in_c);
  REQUIRE(loaded.layers.size() == expected.layers.size());
  for (std::size_t i = 0; i < expected.layers.size(); ++i) {
    const KerasLayer& a = loaded.layers[i];
    const KerasLayer& b = expected.layers[i];
    INFO("layer " << i << " '" << b.name << "'");
    CHECK(a.type == b.type);
    CHECK(a.class_name == b.class_name);
    CHECK(a.name == b.name);
    CHECK(a.weights_group == b.weights_group);
    CHECK(std::tie(a.in_h, a.in_w, a.in_c) == std::tie(b.in_h, b.in_w, b.in_c));
    CHECK(std::tie(a.out_h, a.out_w, a.out_c) == std::tie(b.out_h, b.out_w, b.out_c));
    CHECK(a.filters == b.filters);
    CHECK(std::tie(a.k_h, a.k_w, a.stride_h, a.stride_w) ==
          std::tie(b.k_h, b.k_w, b.stride_h, b.stride_w));
    CHECK(a.same_padding == b.same_padding);
    CHECK(a.use_bias == b.use_bias);
    CHECK(a.relu == b.relu);
    if (b.type == KerasLayerType::kBatchNormalization) CHECK(a.epsilon == b.epsilon);
    REQUIRE(a.vars.size() == b.vars.size());
    for (std::size_t v = 0; v < b.vars.size(); ++v) {
      INFO("vars/" << v);
      CHECK(a.vars[v].shape == b.vars[v].shape);
      CHECK(a.vars[v].values == b.vars[v].values);  // float32 in, float32 out: bit-exact
    }
  }
  CHECK(loaded.parameter_count() == expected.parameter_count());
}

// Writes `graph` to dir/name.keras and checks it loads back identical and computes the same.
void check_round_trip(const KerasGraph& graph, const std::string& dir, const std::string& name,
                      bool deflate) {
  const std::string path = dir + "/" + name + ".keras";
  if (deflate) {
    REQUIRE(write_zip(path, {{"config.json", to_bytes(keras_config_json(graph).dump()), true},
                             {"model.weights.h5", keras_weights_h5(graph), true}})
                .ok());
  } else {
    REQUIRE(write_keras_file(path, graph).ok());
  }
  const auto bytes = read_bytes(path);
  REQUIRE(!bytes.empty());

  auto loaded = load_keras_graph(path);
  INFO(loaded.status().to_string());
  REQUIRE(loaded.ok());
  CHECK(loaded->source == path);
  CHECK(loaded->sha256 == sha256_hex(bytes));
  CHECK(loaded->sha256.size() == 64);
  check_same_graph(*loaded, graph);

  auto model = load_keras_model(path);
  INFO(model.status().to_string());
  REQUIRE(model.ok());
  const ModelInfo& info = (*model)->info;
  CHECK(info.id == name);
  CHECK(info.source == path);
  CHECK(info.sha256 == sha256_hex(bytes));
  CHECK_FALSE(info.demo);
  CHECK(std::tie(info.in_h, info.in_w, info.in_c) == std::tie(graph.in_h, graph.in_w, graph.in_c));
  CHECK(info.parameters == graph.parameter_count());

  auto expected_network = compile_network(graph);
  REQUIRE(expected_network.ok());
  CHECK(info.num_outputs == expected_network->num_outputs());
  CHECK(info.macs_per_image == expected_network->macs());
  std::vector<int> filters;
  for (const auto& l : graph.layers) {
    if (l.type == KerasLayerType::kConv2D || l.type == KerasLayerType::kSeparableConv2D) {
      filters.push_back(l.filters);
    }
  }
  CHECK(info.filters == filters);

  const auto images = test_images(graph, 2);
  const auto got = cpu_forward(*(*model)->network, images, 2);
  const auto want = cpu_forward(*expected_network, images, 2);
  CHECK(got == want);

  auto renamed = load_keras_model(path, "custom_id");
  REQUIRE(renamed.ok());
  CHECK((*renamed)->info.id == "custom_id");
}

// Both entry points must refuse `path` with a message naming the file and every fragment, and
// none of the `absent` ones. Returns the status code.
StatusCode expect_failure(const std::string& path, const std::vector<std::string>& fragments,
                          const ImportLimits& limits = {},
                          const std::vector<std::string>& absent = {}) {
  auto graph = load_keras_graph(path, limits);
  REQUIRE_FALSE(graph.ok());
  auto model = load_keras_model(path, "", limits);
  REQUIRE_FALSE(model.ok());
  const Status status = model.status();
  INFO(status.to_string());
  CHECK(graph.status().message() == status.message());
  CHECK_THAT(status.message(), Contains(path));
  for (const auto& fragment : fragments) CHECK_THAT(status.message(), Contains(fragment));
  for (const auto& fragment : absent) CHECK_THAT(status.message(), !Contains(fragment));
  return status.code();
}

// A small fixture with an edited config.json and the graph's own weights.
std::string write_with_config(const std::string& dir, const std::string& name, const json& config) {
  const std::string path = dir + "/" + name + ".keras";
  REQUIRE(write_keras_zip(path, config.dump(), keras_weights_h5(small_keras_graph())).ok());
  return path;
}

// A small fixture with edited weights and the graph's own config.json.
std::string write_with_weights(const std::string& dir, const std::string& name,
                               const H5Contents& contents) {
  const std::string path = dir + "/" + name + ".keras";
  REQUIRE(
      write_keras_zip(path, keras_config_json(small_keras_graph()).dump(), h5_file_bytes(contents))
          .ok());
  return path;
}

// Byte offset of the central-directory entry of `member` in a zip image.
std::size_t central_entry(const std::vector<std::uint8_t>& zip, const std::string& member) {
  for (std::size_t i = 0; i + 46 <= zip.size(); ++i) {
    if (zip[i] == 0x50 && zip[i + 1] == 0x4b && zip[i + 2] == 0x01 && zip[i + 3] == 0x02) {
      const std::size_t name_len = zip[i + 28] | (zip[i + 29] << 8);
      if (i + 46 + name_len <= zip.size() &&
          std::string(zip.begin() + i + 46, zip.begin() + i + 46 + name_len) == member) {
        return i;
      }
    }
  }
  FAIL("no central directory entry for " << member);
  return 0;
}

void put_u32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t v) {
  for (int b = 0; b < 4; ++b) bytes[at + b] = static_cast<std::uint8_t>(v >> (8 * b));
}

// The process's peak resident set size so far.
long peak_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

std::uint32_t get_u32(const std::vector<std::uint8_t>& bytes, std::size_t at) {
  std::uint32_t v = 0;
  for (int b = 0; b < 4; ++b) v |= std::uint32_t{bytes[at + b]} << (8 * b);
  return v;
}

}  // namespace

// ---- round trips ------------------------------------------------------------------------------

TEST_CASE("a written demo model loads back exactly and computes the same", "[loader]") {
  const std::string dir = scratch_dir("loader_round_trip_demo");
  check_round_trip(build_demo_graph(), dir, "demo_copy", /*deflate=*/false);

  // And the listing facts match the built-in demo model's.
  auto model = load_keras_model(dir + "/demo_copy.keras");
  REQUIRE(model.ok());
  const ModelInfo& demo = demo_model()->info;
  CHECK((*model)->info.parameters == demo.parameters);
  CHECK((*model)->info.macs_per_image == demo.macs_per_image);
  CHECK((*model)->info.filters == demo.filters);
  CHECK((*model)->info.num_outputs == 1);
  // The forward pass equals the built-in demo model's.
  const KerasGraph graph = build_demo_graph();
  const auto images = test_images(graph, 3);
  CHECK(cpu_forward(*(*model)->network, images, 3) ==
        cpu_forward(*demo_model()->network, images, 3));
}

TEST_CASE("a small graph with every supported option round-trips", "[loader]") {
  const std::string dir = scratch_dir("loader_round_trip_small");
  SECTION("stored members, as Keras writes them") {
    check_round_trip(small_keras_graph(), dir, "small", /*deflate=*/false);
  }
  SECTION("deflated members, no metadata.json") {
    check_round_trip(small_keras_graph(), dir, "small_deflated", /*deflate=*/true);
  }
  SECTION("float64 datasets are accepted and rounded to float32") {
    const KerasGraph graph = small_keras_graph();
    H5Contents contents = keras_weights_contents(graph);
    for (auto& d : contents.datasets) d.type = H5Type::kFloat64;
    const std::string path = write_with_weights(dir, "small_f64", contents);
    auto loaded = load_keras_graph(path);
    INFO(loaded.status().to_string());
    REQUIRE(loaded.ok());
    check_same_graph(*loaded, graph);
  }
  SECTION("extra members and Keras' optional fields are ignored") {
    const KerasGraph graph = small_keras_graph();
    json config = keras_config_json(graph);
    config_layer(config, "c0")["config"]["kernel_size"] = json::array({3, 2});
    config_layer(config, "dw")["config"]["dilation_rate"] = nullptr;  // Keras default applies
    const std::string path = dir + "/extras.keras";
    REQUIRE(write_keras_zip(path, config.dump(2), keras_weights_h5(graph),
                            {{"assets/readme.txt", to_bytes("hello")}})
                .ok());
    auto loaded = load_keras_graph(path);
    INFO(loaded.status().to_string());
    REQUIRE(loaded.ok());
    check_same_graph(*loaded, graph);
  }
}

// ---- hostile files: the archive ---------------------------------------------------------------

TEST_CASE("hostile archives are refused with a message naming the problem", "[loader]") {
  const std::string dir = scratch_dir("loader_hostile_archive");
  const std::string good = dir + "/good.keras";
  REQUIRE(write_keras_file(good, build_demo_graph()).ok());
  const auto good_bytes = read_bytes(good);
  REQUIRE(good_bytes.size() > 1000);

  SECTION("nonexistent file") {
    const StatusCode s = expect_failure(dir + "/missing.keras", {"does not exist"});
    CHECK(s == StatusCode::kNotFound);
  }
  SECTION("a directory") {
    fs::create_directories(dir + "/folder.keras");
    const StatusCode s = expect_failure(dir + "/folder.keras", {"is a directory"});
    CHECK(s == StatusCode::kInvalidArgument);
  }
  SECTION("a FIFO is refused without blocking") {
    const std::string path = dir + "/pipe.keras";
    REQUIRE(mkfifo(path.c_str(), 0600) == 0);
    expect_failure(path, {"not a regular file"});
  }
  SECTION("empty file") {
    const std::string path = dir + "/empty.keras";
    REQUIRE(write_bytes(path, {}).ok());
    expect_failure(path, {"model file is empty"});
  }
  SECTION("random bytes") {
    std::mt19937 rng(1);
    std::vector<std::uint8_t> noise(5000);
    for (auto& b : noise) b = static_cast<std::uint8_t>(rng());
    const std::string path = dir + "/noise.keras";
    REQUIRE(write_bytes(path, noise).ok());
    expect_failure(path, {"not a valid .keras (zip) archive"});
  }
  SECTION("plain text") {
    const std::string path = dir + "/text.keras";
    REQUIRE(write_bytes(path, to_bytes("this is not a model\n")).ok());
    expect_failure(path, {"not a valid .keras (zip) archive"});
  }
  SECTION("truncated copies") {
    const std::size_t n = good_bytes.size();
    for (std::size_t cut : {std::size_t{1}, std::size_t{4}, std::size_t{30}, std::size_t{100},
                            n / 4, n / 2, 3 * n / 4, n - 200, n - 60, n - 22, n - 10, n - 1}) {
      INFO("cut at " << cut << " of " << n);
      const std::string path = dir + "/truncated_" + std::to_string(cut) + ".keras";
      REQUIRE(write_bytes(path, {good_bytes.begin(), good_bytes.begin() + cut}).ok());
      const StatusCode s = expect_failure(path, {});
      CHECK(s == StatusCode::kDataLoss);
    }
  }
  SECTION("bytes flipped in the middle fail the CRC check") {
    auto bytes = good_bytes;
    for (std::size_t i = 0; i < 16; ++i) bytes[bytes.size() / 2 + i] ^= 0x5a;
    const std::string path = dir + "/flipped.keras";
    REQUIRE(write_bytes(path, bytes).ok());
    expect_failure(path, {"CRC"});
  }
  SECTION("bytes flipped inside a deflated member") {
    const KerasGraph graph = small_keras_graph();
    const std::string path = dir + "/flipped_deflate.keras";
    REQUIRE(write_zip(path, {{"config.json", to_bytes(keras_config_json(graph).dump()), true},
                             {"model.weights.h5", keras_weights_h5(graph), true}})
                .ok());
    auto bytes = read_bytes(path);
    for (std::size_t i = 0; i < 8; ++i) bytes[bytes.size() / 2 + i] ^= 0xff;
    REQUIRE(write_bytes(path, bytes).ok());
    expect_failure(path, {"corrupt"});
  }
  SECTION("zip without config.json") {
    const std::string path = dir + "/no_config.keras";
    REQUIRE(write_zip(path, {{"metadata.json", to_bytes("{}")},
                             {"model.weights.h5", keras_weights_h5(build_demo_graph())}})
                .ok());
    expect_failure(path, {"archive has no config.json"});
  }
  SECTION("zip without model.weights.h5") {
    const std::string path = dir + "/no_weights.keras";
    REQUIRE(
        write_zip(path, {{"metadata.json", to_bytes("{}")},
                         {"config.json", to_bytes(keras_config_json(build_demo_graph()).dump())}})
            .ok());
    expect_failure(path, {"archive has no model.weights.h5"});
  }
  SECTION("zip with members in a subfolder only") {
    const KerasGraph graph = small_keras_graph();
    const std::string path = dir + "/nested.keras";
    REQUIRE(write_zip(path, {{"model/config.json", to_bytes(keras_config_json(graph).dump())},
                             {"model/model.weights.h5", keras_weights_h5(graph)}})
                .ok());
    expect_failure(path, {"archive has no config.json"});
  }
  SECTION("empty zip") {
    const std::string path = dir + "/empty_zip.keras";
    REQUIRE(write_zip(path, {}).ok());
    REQUIRE(read_bytes(path).size() == 22);
    expect_failure(path, {"config.json"});
  }
  SECTION("a member declaring a size far beyond its data") {
    auto bytes = good_bytes;
    const std::size_t entry = central_entry(bytes, "model.weights.h5");
    put_u32(bytes, entry + 24, 0xfffffff0u);  // uncompressed size: ~4 GiB, data is ~80 KiB
    const std::string path = dir + "/size_lie.keras";
    REQUIRE(write_bytes(path, bytes).ok());
    // Over the default limit: refused from the declared size alone.
    const StatusCode s = expect_failure(path, {"model.weights.h5", "more than the limit"});
    CHECK(s == StatusCode::kResourceExhausted);
    // Within a (raised) limit: the lie is found when the data runs out, without first
    // allocating what the header claims (the peak resident size must not jump by gigabytes).
    ImportLimits generous;
    generous.max_file_bytes = std::int64_t{16} << 30;
    generous.max_weights_bytes = std::int64_t{16} << 30;
    const long peak_before_kb = peak_rss_kb();
    expect_failure(path, {"corrupt model.weights.h5"}, generous);
    CHECK(peak_rss_kb() - peak_before_kb < 512 * 1024);
  }
  SECTION("config.json declared larger than its actual data") {
    auto bytes = good_bytes;
    const std::size_t entry = central_entry(bytes, "config.json");
    put_u32(bytes, entry + 24, get_u32(bytes, entry + 24) + 100000);
    const std::string path = dir + "/config_size_lie.keras";
    REQUIRE(write_bytes(path, bytes).ok());
    expect_failure(path, {"config.json"});
  }
}

TEST_CASE("import limits are enforced with messages naming the limit", "[loader]") {
  const std::string dir = scratch_dir("loader_limits");
  const std::string path = dir + "/demo_copy.keras";
  REQUIRE(write_keras_file(path, build_demo_graph()).ok());
  ImportLimits limits;

  SECTION("file size") {
    limits.max_file_bytes = 1000;
    const StatusCode s = expect_failure(path, {"more than the 1000-byte limit"}, limits);
    CHECK(s == StatusCode::kResourceExhausted);
  }
  SECTION("config.json declared larger than the limit") {
    limits.max_config_bytes = 1000;
    const StatusCode s =
        expect_failure(path, {"config.json is ", "more than the limit of 1000"}, limits);
    CHECK(s == StatusCode::kResourceExhausted);
  }
  SECTION("model.weights.h5 declared larger than the limit") {
    limits.max_weights_bytes = 1000;
    const StatusCode s =
        expect_failure(path, {"model.weights.h5 is ", "more than the limit of 1000"}, limits);
    CHECK(s == StatusCode::kResourceExhausted);
  }
  SECTION("layer count") {
    limits.max_layers = 5;
    expect_failure(path, {"more than the limit of 5"}, limits);
  }
  SECTION("image side") {
    limits.max_image_side = 100;
    expect_failure(path, {"input height = 112 is outside 1..100"}, limits);
  }
  SECTION("channels") {
    limits.max_channels = 10;
    expect_failure(path, {"layer 'layer0_conv'", "filters = 16 is outside 1..10"}, limits);
  }
  SECTION("kernel size") {
    limits.max_kernel = 3;
    expect_failure(path, {"layer 'layer0_conv'", "kernel_size = 5 is outside 1..3"}, limits);
  }
  SECTION("activation size") {
    limits.max_activation_elements = 112 * 112 * 16 - 1;
    expect_failure(path, {"layer 'layer0_conv'", "exceeds the limit"}, limits);
  }
  SECTION("parameter count") {
    limits.max_parameters = 1000;
    expect_failure(path, {"limit of 1000 parameters"}, limits);
  }
}

// ---- hostile files: config.json ---------------------------------------------------------------

TEST_CASE("unsupported or malformed config.json is refused naming the layer", "[loader]") {
  const std::string dir = scratch_dir("loader_hostile_config");
  const KerasGraph graph = small_keras_graph();
  json config = keras_config_json(graph);
  json& c0 = config_layer(config, "c0")["config"];
  json& sep = config_layer(config, "sep")["config"];
  json& dw = config_layer(config, "dw")["config"];

  SECTION("config.json that is not JSON") {
    const std::string path = dir + "/not_json.keras";
    REQUIRE(write_keras_zip(path, "{\"class_name\": \"Functional\", \"config\": [",
                            keras_weights_h5(graph))
                .ok());
    expect_failure(path, {"config.json is not valid JSON"});
  }
  SECTION("config.json that is JSON but not an object") {
    expect_failure(write_with_config(dir, "string", json("Functional")), {"config.json"});
    expect_failure(write_with_config(dir, "array", json::array({1, 2})), {"config.json"});
  }
  SECTION("deeply nested JSON") {
    const std::string path = dir + "/nested.keras";
    std::string text(100000, '[');
    text += std::string(100000, ']');
    REQUIRE(write_keras_zip(path, text, keras_weights_h5(graph)).ok());
    expect_failure(path, {"config.json"});
  }
  SECTION("unsupported layer type") {
    json& layers = config["config"]["layers"];
    json pool = config_layer(config, "act0");
    pool["class_name"] = "MaxPooling2D";
    pool["name"] = "pool";
    pool["config"] = {{"name", "pool"},
                      {"pool_size", {2, 2}},
                      {"strides", {2, 2}},
                      {"padding", "valid"},
                      {"data_format", "channels_last"}};
    config_layer(config, "dw")["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] =
        "pool";
    for (std::size_t i = 0; i < layers.size(); ++i) {
      if (layers[i]["name"] == "act0") {
        layers.insert(layers.begin() + static_cast<std::ptrdiff_t>(i + 1), pool);
        break;
      }
    }
    const StatusCode s = expect_failure(write_with_config(dir, "maxpool", config),
                                        {"layer 'pool' (MaxPooling2D)", "unsupported layer type"});
    CHECK(s == StatusCode::kUnimplemented);
  }
  SECTION("dilation_rate [2,2]") {
    c0["dilation_rate"] = {2, 2};
    const StatusCode s = expect_failure(write_with_config(dir, "dilation", config),
                                        {"layer 'c0' (Conv2D)", "dilation_rate", "[2,2]"});
    CHECK(s == StatusCode::kUnimplemented);
  }
  SECTION("dilation_rate on a separable convolution") {
    sep["dilation_rate"] = 2;
    expect_failure(write_with_config(dir, "dilation_sep", config),
                   {"layer 'sep' (SeparableConv2D)", "dilation_rate"});
  }
  SECTION("groups 2") {
    c0["groups"] = 2;
    expect_failure(write_with_config(dir, "groups", config), {"layer 'c0' (Conv2D)", "groups 2"});
  }
  SECTION("depth_multiplier 2 on a SeparableConv2D") {
    sep["depth_multiplier"] = 2;
    expect_failure(write_with_config(dir, "depth_multiplier_sep", config),
                   {"layer 'sep' (SeparableConv2D)", "depth_multiplier 2"});
  }
  SECTION("depth_multiplier 2 on a DepthwiseConv2D") {
    dw["depth_multiplier"] = 2;
    expect_failure(write_with_config(dir, "depth_multiplier_dw", config),
                   {"layer 'dw' (DepthwiseConv2D)", "depth_multiplier 2"});
  }
  SECTION("activation relu inside a Conv2D") {
    c0["activation"] = "relu";
    const StatusCode s = expect_failure(write_with_config(dir, "conv_relu", config),
                                        {"layer 'c0' (Conv2D)", "activation \"relu\""});
    CHECK(s == StatusCode::kUnimplemented);
  }
  SECTION("activation inside a Dense layer") {
    config_layer(config, "out")["config"]["activation"] = "softmax";
    expect_failure(write_with_config(dir, "dense_softmax", config),
                   {"layer 'out' (Dense)", "activation \"softmax\""});
  }
  SECTION("unknown function in an Activation layer") {
    config_layer(config, "act1")["config"]["activation"] = "sigmoid";
    expect_failure(write_with_config(dir, "sigmoid", config),
                   {"layer 'act1' (Activation)", "activation \"sigmoid\""});
  }
  SECTION("padding causal") {
    c0["padding"] = "causal";
    expect_failure(write_with_config(dir, "causal", config),
                   {"layer 'c0' (Conv2D)", "padding \"causal\""});
  }
  SECTION("data_format channels_first") {
    sep["data_format"] = "channels_first";
    expect_failure(write_with_config(dir, "channels_first", config),
                   {"layer 'sep' (SeparableConv2D)", "data_format \"channels_first\""});
  }
  SECTION("BatchNormalization over another axis") {
    config_layer(config, "bn0")["config"]["axis"] = 1;
    expect_failure(write_with_config(dir, "bn_axis", config),
                   {"layer 'bn0' (BatchNormalization)", "axis 1"});
  }
  SECTION("Sequential model class") {
    config["class_name"] = "Sequential";
    const StatusCode s = expect_failure(write_with_config(dir, "sequential", config),
                                        {"model class \"Sequential\""});
    CHECK(s == StatusCode::kUnimplemented);
  }
  SECTION("branching graph") {
    // dw reads c0's output instead of act0's: a skip connection.
    config_layer(config, "dw")["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "c0";
    expect_failure(write_with_config(dir, "branch", config),
                   {"layer 'dw' (DepthwiseConv2D)", "takes its input from", "'act0'"});
  }
  SECTION("a layer with two inputs") {
    json& args = config_layer(config, "sep")["inbound_nodes"][0]["args"];
    args.push_back(args[0]);
    expect_failure(write_with_config(dir, "two_inputs", config),
                   {"layer 'sep' (SeparableConv2D)", "exactly one input"});
  }
  SECTION("a layer called twice") {
    json& nodes = config_layer(config, "sep")["inbound_nodes"];
    nodes.push_back(nodes[0]);
    expect_failure(write_with_config(dir, "called_twice", config),
                   {"layer 'sep' (SeparableConv2D)", "exactly once"});
  }
  SECTION("output not the last layer") {
    config["config"]["output_layers"] = json::array({json::array({"act1", 0, 0})});
    expect_failure(write_with_config(dir, "output", config), {"model output must be the last"});
  }
  SECTION("first layer not an InputLayer") {
    config["config"]["layers"].erase(0);
    expect_failure(write_with_config(dir, "no_input", config), {"InputLayer"});
  }
  SECTION("filters = 1000000000 fails at config time") {
    c0["filters"] = 1000000000;
    // Weights are those of a 4-filter model: the error must come from the config alone.
    expect_failure(write_with_config(dir, "billion_filters", config),
                   {"layer 'c0' (Conv2D)", "filters = 1000000000"}, {}, {"vars"});
  }
  SECTION("filters that are not positive integers") {
    c0["filters"] = -3;
    expect_failure(write_with_config(dir, "negative_filters", config),
                   {"layer 'c0' (Conv2D)", "filters = -3"});
    c0["filters"] = 4.5;
    expect_failure(write_with_config(dir, "float_filters", config),
                   {"layer 'c0' (Conv2D)", "filters must be an integer"});
    c0["filters"] = std::numeric_limits<std::uint64_t>::max();
    expect_failure(write_with_config(dir, "huge_filters", config),
                   {"layer 'c0' (Conv2D)", "filters"});
    c0.erase("filters");
    expect_failure(write_with_config(dir, "no_filters", config), {"layer 'c0' (Conv2D)"});
  }
  SECTION("Dense units = 1000000000") {
    config_layer(config, "out")["config"]["units"] = 1000000000;
    expect_failure(write_with_config(dir, "billion_units", config),
                   {"layer 'out' (Dense)", "units = 1000000000"});
  }
  SECTION("kernel_size [100000, 5]") {
    c0["kernel_size"] = {100000, 5};
    expect_failure(write_with_config(dir, "huge_kernel", config),
                   {"layer 'c0' (Conv2D)", "kernel_size = 100000"});
  }
  SECTION("kernel larger than its input with valid padding") {
    c0["kernel_size"] = {12, 2};
    expect_failure(write_with_config(dir, "kernel_too_big", config),
                   {"layer 'c0' (Conv2D)", "larger than its 11x9 input"});
  }
  SECTION("strides 0") {
    c0["strides"] = {0, 1};
    expect_failure(write_with_config(dir, "zero_stride", config),
                   {"layer 'c0' (Conv2D)", "strides = 0"});
  }
  SECTION("input batch_shape 100000x100000") {
    config["config"]["layers"][0]["config"]["batch_shape"] = {nullptr, 100000, 100000, 3};
    expect_failure(write_with_config(dir, "huge_input", config), {"input height = 100000"});
  }
  SECTION("an input too large to flatten, straight into Flatten") {
    // 2048 x 2048 x 1536 values: each side within its limit, the product past 2^31.
    json& layers = config["config"]["layers"];
    layers[0]["config"]["batch_shape"] = {nullptr, 2048, 2048, 1536};
    json flatten = config_layer(config, "flat");
    json dense = config_layer(config, "out");
    flatten["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "image_input";
    layers = json::array({layers[0], flatten, dense});
    expect_failure(write_with_config(dir, "flatten_input", config), {"exceeds the limit"});
  }
  SECTION("input batch_shape with the wrong rank") {
    config["config"]["layers"][0]["config"]["batch_shape"] = {nullptr, 112, 3};
    expect_failure(write_with_config(dir, "rank3_input", config), {"batch shape"});
  }
  SECTION("too many layers, before anything is parsed") {
    json& layers = config["config"]["layers"];
    const json copy = layers[1];
    while (layers.size() < 1000) layers.push_back(copy);
    expect_failure(write_with_config(dir, "many_layers", config),
                   {"1000 layers, more than the limit"});
  }
  SECTION("a layer without a config") {
    config_layer(config, "sep").erase("config");
    expect_failure(write_with_config(dir, "no_layer_config", config),
                   {"layer 'sep' (SeparableConv2D)", "malformed config"});
  }
}

// ---- hostile files: model.weights.h5 ----------------------------------------------------------

TEST_CASE("bad weights are refused naming the layer and the dataset", "[loader]") {
  const std::string dir = scratch_dir("loader_hostile_weights");
  const KerasGraph graph = small_keras_graph();
  H5Contents contents = keras_weights_contents(graph);

  SECTION("a missing weights dataset") {
    auto& ds = contents.datasets;
    ds.erase(std::find_if(ds.begin(), ds.end(), [](const H5Dataset& d) {
      return d.path == "/layers/separable_conv2d/vars/1";
    }));
    expect_failure(write_with_weights(dir, "missing_dataset", contents),
                   {"layer 'sep' (SeparableConv2D)",
                    "missing weights dataset /layers/separable_conv2d/vars/1"});
  }
  SECTION("a missing layer group") {
    auto& ds = contents.datasets;
    ds.erase(
        std::remove_if(ds.begin(), ds.end(),
                       [](const H5Dataset& d) { return d.path.find("/dense/") != d.path.npos; }),
        ds.end());
    expect_failure(write_with_weights(dir, "missing_group", contents),
                   {"layer 'out' (Dense)", "missing weights dataset /layers/dense/vars/0"});
  }
  SECTION("no weights at all") {
    expect_failure(write_with_weights(dir, "no_datasets", H5Contents{}),
                   {"layer 'c0' (Conv2D)", "missing weights dataset /layers/conv2d/vars/0"});
  }
  SECTION("a weights dataset with the wrong shape") {
    H5Dataset& d = h5_dataset(contents, "/layers/conv2d/vars/0");
    d.shape = {3, 2, 2, 5};
    d.values.resize(3 * 2 * 2 * 5, 0.5);
    expect_failure(write_with_weights(dir, "wrong_shape", contents),
                   {"layer 'c0' (Conv2D)", "/layers/conv2d/vars/0 has shape (3, 2, 2, 5)",
                    "the config implies (3, 2, 2, 4)"});
  }
  SECTION("a weights dataset with the wrong rank") {
    H5Dataset& d = h5_dataset(contents, "/layers/batch_normalization/vars/3");
    d.shape = {1, 4};
    expect_failure(
        write_with_weights(dir, "wrong_rank", contents),
        {"layer 'bn0' (BatchNormalization)", "has shape (1, 4)", "the config implies (4,)"});
  }
  SECTION("a scalar where a vector belongs") {
    H5Dataset& d = h5_dataset(contents, "/layers/dense/vars/1");
    d.shape = {};
    d.values = {1.0};
    expect_failure(write_with_weights(dir, "scalar", contents),
                   {"layer 'out' (Dense)", "/layers/dense/vars/1 has shape ()"});
  }
  SECTION("a dataset declaring a huge shape") {
    H5Dataset& d = h5_dataset(contents, "/layers/dense/vars/0");
    d.shape = {std::int64_t{1} << 20, std::int64_t{1} << 20};
    d.write_data = false;
    expect_failure(write_with_weights(dir, "huge_dataset", contents),
                   {"layer 'out' (Dense)", "has shape (1048576, 1048576)"});
  }
  SECTION("a dataset with the right shape but no stored data") {
    h5_dataset(contents, "/layers/conv2d/vars/0").write_data = false;
    expect_failure(write_with_weights(dir, "unallocated", contents),
                   {"layer 'c0' (Conv2D)", "/layers/conv2d/vars/0 stores 0 bytes for 48 values"});
  }
  SECTION("an integer-typed dataset") {
    h5_dataset(contents, "/layers/separable_conv2d/vars/2").type = H5Type::kInt32;
    expect_failure(write_with_weights(dir, "int_dataset", contents),
                   {"layer 'sep' (SeparableConv2D)",
                    "/layers/separable_conv2d/vars/2 is not a floating-point dataset"});
  }
  SECTION("NaN in weights") {
    h5_dataset(contents, "/layers/depthwise_conv2d/vars/0").values[5] =
        std::numeric_limits<double>::quiet_NaN();
    expect_failure(write_with_weights(dir, "nan", contents),
                   {"layer 'dw' (DepthwiseConv2D)", "NaN or infinite"});
  }
  SECTION("infinity in BatchNorm statistics") {
    h5_dataset(contents, "/layers/batch_normalization/vars/3").values[0] =
        std::numeric_limits<double>::infinity();
    expect_failure(write_with_weights(dir, "inf", contents),
                   {"layer 'bn0' (BatchNormalization)", "NaN or infinite"});
  }
  SECTION("a BatchNorm variance + epsilon that is negative") {
    h5_dataset(contents, "/layers/batch_normalization/vars/3").values[2] = -0.5;
    const StatusCode code =
        expect_failure(write_with_weights(dir, "negative_variance", contents),
                       {"layer 'bn0' (BatchNormalization)",
                        "moving_variance + epsilon of channel 2", "not positive"});
    CHECK(code == StatusCode::kDataLoss);
  }
  SECTION("a BatchNorm variance + epsilon of exactly zero") {
    h5_dataset(contents, "/layers/batch_normalization/vars/3").values[0] = -0.001;
    expect_failure(write_with_weights(dir, "zero_variance", contents),
                   {"layer 'bn0' (BatchNormalization)", "channel 0", "not positive"});
  }
  SECTION("finite weights that BatchNorm folding makes infinite") {
    h5_dataset(contents, "/layers/conv2d/vars/0").values[0] = 3e38;  // output channel 0
    h5_dataset(contents, "/layers/batch_normalization/vars/3").values[0] = 0.0;
    const std::string path = write_with_weights(dir, "fold_overflow", contents);
    REQUIRE(load_keras_graph(path).ok());  // every stored value is finite
    auto model = load_keras_model(path);
    REQUIRE_FALSE(model.ok());
    CHECK_THAT(model.status().message(), Contains(path));
    CHECK_THAT(model.status().message(), Contains("layer 'c0'"));
    CHECK_THAT(model.status().message(), Contains("NaN or infinite after BatchNorm folding"));
  }
  SECTION("float64 values beyond float32's range") {
    H5Dataset& d = h5_dataset(contents, "/layers/dense/vars/1");
    d.type = H5Type::kFloat64;
    d.values[1] = 1e300;
    expect_failure(write_with_weights(dir, "f64_overflow", contents),
                   {"layer 'out' (Dense)", "/layers/dense/vars/1"});
  }
  SECTION("weights that are not HDF5") {
    const std::string path = dir + "/not_hdf5.keras";
    std::mt19937 rng(3);
    std::vector<std::uint8_t> noise(4096);
    for (auto& b : noise) b = static_cast<std::uint8_t>(rng());
    REQUIRE(write_keras_zip(path, keras_config_json(graph).dump(), noise).ok());
    expect_failure(path, {"model.weights.h5 is not a readable HDF5 file"});
  }
  SECTION("empty weights") {
    const std::string path = dir + "/empty_weights.keras";
    REQUIRE(write_keras_zip(path, keras_config_json(graph).dump(), {}).ok());
    expect_failure(path, {"model.weights.h5"});
  }
  SECTION("truncated weights") {
    const auto h5 = keras_weights_h5(graph);
    for (std::size_t cut : {std::size_t{8}, std::size_t{100}, h5.size() / 2, h5.size() - 1}) {
      INFO("cut at " << cut << " of " << h5.size());
      const std::string path = dir + "/truncated_h5_" + std::to_string(cut) + ".keras";
      REQUIRE(write_keras_zip(path, keras_config_json(graph).dump(),
                              {h5.begin(), h5.begin() + static_cast<std::ptrdiff_t>(cut)})
                  .ok());
      expect_failure(path, {"model.weights.h5"});
    }
  }
}

// ---- the published models ------------------------------------------------------------------

TEST_CASE("every published model loads with the listed filters and MACs", "[loader][v4data]") {
  const auto data = v4_data_dir();
  if (!data) {
    print_skip("published model listing");
    return;
  }
  struct Listed {
    std::string file;
    std::vector<int> filters;
    std::int64_t macs = 0;
  };
  std::vector<Listed> listed;
  std::ifstream list(*data + "/golden/models_list.txt");
  REQUIRE(list);
  for (std::string line; std::getline(list, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string index, session, neuron, file, filters, macs;
    REQUIRE(std::getline(fields, index, '\t'));
    REQUIRE(std::getline(fields, session, '\t'));
    REQUIRE(std::getline(fields, neuron, '\t'));
    REQUIRE(std::getline(fields, file, '\t'));
    REQUIRE(std::getline(fields, filters, '\t'));
    REQUIRE(std::getline(fields, macs, '\t'));
    Listed entry{file, {}, std::stoll(macs)};
    std::istringstream counts(filters);
    for (std::string n; std::getline(counts, n, ',');) entry.filters.push_back(std::stoi(n));
    listed.push_back(entry);
  }
  REQUIRE(listed.size() == 219);

  // The folder holds exactly the listed files.
  std::vector<std::string> on_disk;
  for (const auto& entry : fs::directory_iterator(*data + "/compact_models")) {
    if (entry.path().extension() == ".keras") on_disk.push_back(entry.path().filename().string());
  }
  std::sort(on_disk.begin(), on_disk.end());
  std::vector<std::string> names;
  for (const auto& e : listed) names.push_back(e.file);
  std::sort(names.begin(), names.end());
  CHECK(on_disk == names);

  int matching = 0;
  for (const auto& e : listed) {
    const std::string path = *data + "/compact_models/" + e.file;
    auto model = load_keras_model(path);
    INFO(e.file << ": " << model.status().to_string());
    REQUIRE(model.ok());
    const ModelInfo& info = (*model)->info;
    CHECK(info.num_outputs == 1);
    CHECK(std::tie(info.in_h, info.in_w, info.in_c) == std::make_tuple(112, 112, 3));
    CHECK(info.id == fs::path(e.file).stem().string());
    CHECK(info.sha256 == sha256_hex(read_bytes(path)));
    CHECK(info.filters == e.filters);
    CHECK(info.macs_per_image == e.macs);
    if (info.filters == e.filters && info.macs_per_image == e.macs) ++matching;
  }
  CHECK(matching == 219);

  std::ifstream shared_list(*data + "/golden/shared_models.txt");
  REQUIRE(shared_list);
  int shared = 0;
  for (std::string line; std::getline(shared_list, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::string file = line.substr(line.find('\t') + 1);
    auto model = load_keras_model(*data + "/shared_compact_models/" + file);
    INFO(file << ": " << model.status().to_string());
    REQUIRE(model.ok());
    CHECK((*model)->info.num_outputs == 219);
    // Layers 0-2 have N filters (the file name's), layers 3-4 have 100, then a 1x1 Conv2D mixes
    // them into the 219 outputs.
    const int n = std::stoi(file.substr(file.rfind('_') + 1));
    CHECK((*model)->info.filters == std::vector<int>{n, n, n, 100, 100, 219});
    ++shared;
  }
  CHECK(shared == 8);
  int shared_on_disk = 0;
  for (const auto& entry : fs::directory_iterator(*data + "/shared_compact_models")) {
    if (entry.path().extension() == ".keras") ++shared_on_disk;
  }
  CHECK(shared_on_disk == 8);
}

// Random byte flips inside model.weights.h5 (the zip's CRC is right: the flips happen before
// zipping). Each file either loads or is refused; none may crash or hang. 20000 trials ran clean
// when this was written; 300 keep the suite fast.
TEST_CASE("weights with corrupted bytes never crash the loader", "[loader]") {
  const std::string dir = scratch_dir("loader_fuzz_weights");
  const KerasGraph graph = small_keras_graph();
  const std::string config = keras_config_json(graph).dump();
  const auto h5 = keras_weights_h5(graph);
  std::mt19937 rng(11);
  int refused = 0, loaded = 0;
  for (int trial = 0; trial < 300; ++trial) {
    auto bytes = h5;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f)
      bytes[rng() % bytes.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    const std::string path = dir + "/fuzz.keras";
    REQUIRE(write_keras_zip(path, config, bytes).ok());
    auto model = load_keras_model(path);
    (model.ok() ? loaded : refused)++;
  }
  INFO(loaded << " loaded, " << refused << " refused");
  CHECK(refused > 0);
}

// Every kind of JSON value put where config.json expects another: the loader must refuse or
// accept, never crash (json type errors included) or ask for absurd memory.
TEST_CASE("config.json with a value of the wrong kind never crashes the loader", "[loader]") {
  const std::string dir = scratch_dir("loader_fuzz_config");
  const KerasGraph graph = small_keras_graph();
  const json config = keras_config_json(graph);
  const auto h5 = keras_weights_h5(graph);
  std::vector<std::string> leaves;
  const json flat = config.flatten();  // items() must not outlive what it iterates
  for (const auto& item : flat.items()) leaves.push_back(item.key());
  const std::vector<json> replacements = {nullptr,
                                          "x",
                                          "",
                                          -1,
                                          0,
                                          1,
                                          7,
                                          2147483648LL,
                                          1e308,
                                          -0.5,
                                          true,
                                          json::array(),
                                          json::object(),
                                          json::array({1, 2})};
  std::mt19937 rng(5);
  int refused = 0, loaded = 0;
  for (int trial = 0; trial < 400; ++trial) {
    json mutated = config;
    const std::string& leaf = leaves[rng() % leaves.size()];
    mutated[json::json_pointer(leaf)] = replacements[rng() % replacements.size()];
    const std::string path = dir + "/mutated.keras";
    REQUIRE(write_keras_zip(path, mutated.dump(), h5).ok());
    auto model = load_keras_model(path);
    INFO(leaf << ": " << model.status().to_string());
    if (model.ok()) {
      ++loaded;
    } else {
      ++refused;
      CHECK_THAT(model.status().message(), Contains(path));
    }
  }
  INFO(loaded << " loaded, " << refused << " refused");
  CHECK(refused > 0);
}
