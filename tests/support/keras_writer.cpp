#include "tests/support/keras_writer.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "kernels/layer_params.h"

namespace stimloop::test {

using nlohmann::json;

// ---- config.json ----------------------------------------------------------------------------

json& config_layer(json& config, const std::string& name) {
  for (auto& layer : config.at("config").at("layers")) {
    if (layer.at("config").value("name", std::string()) == name) return layer;
  }
  throw std::out_of_range("config.json has no layer named " + name);
}

// ---- model.weights.h5 -----------------------------------------------------------------------

std::vector<std::uint8_t> h5_file_bytes(const H5Contents& contents) {
  auto bytes = h5_file_image(contents);
  if (!bytes.ok()) FAIL("keras_writer: " << bytes.status().message());
  return std::move(bytes).value();
}

std::vector<std::uint8_t> keras_weights_h5(const KerasGraph& graph) {
  return h5_file_bytes(keras_weights_contents(graph));
}

H5Dataset& h5_dataset(H5Contents& contents, const std::string& path) {
  for (auto& d : contents.datasets) {
    if (d.path == path) return d;
  }
  throw std::out_of_range("no dataset " + path);
}

Status write_keras_file(const std::string& path, const KerasGraph& graph) {
  return write_keras_zip(path, keras_config_json(graph).dump(), keras_weights_h5(graph));
}

// ---- small helpers --------------------------------------------------------------------------

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Status write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return internal_error("cannot write " + path);
  return Status::Ok();
}

std::vector<std::uint8_t> to_bytes(const std::string& text) { return {text.begin(), text.end()}; }

KerasGraph small_keras_graph() {
  KerasGraph g;
  g.source = "small_keras_graph";
  g.in_h = 11, g.in_w = 9, g.in_c = 2;
  g.layers.reserve(8);  // references returned by add() stay valid
  std::uint32_t state = 12345;
  auto next = [&state] {  // deterministic values in [-1, 1)
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<double>(state >> 8) / (1 << 23) - 1.0);
  };
  auto tensor = [&next](std::vector<std::int64_t> shape, float offset = 0.0f, float scale = 1.0f) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    WeightTensor t{std::move(shape), {}};
    for (std::int64_t i = 0; i < n; ++i) t.values.push_back(offset + scale * next());
    return t;
  };
  int h = g.in_h, w = g.in_w, c = g.in_c;
  auto add = [&](KerasLayerType type, const char* class_name, const char* name,
                 const char* group) -> KerasLayer& {
    KerasLayer l;
    l.type = type;
    l.class_name = class_name;
    l.name = name;
    l.weights_group = group;
    l.in_h = l.out_h = h, l.in_w = l.out_w = w, l.in_c = l.out_c = c;
    g.layers.push_back(l);
    return g.layers.back();
  };
  auto conv_geometry = [&](KerasLayer& l, int kh, int kw, int sh, int sw, bool same, int out_c) {
    l.k_h = kh, l.k_w = kw, l.stride_h = sh, l.stride_w = sw, l.same_padding = same;
    l.out_h = (same ? same_padding(h, kh, sh) : valid_padding(h, kh, sh)).out;
    l.out_w = (same ? same_padding(w, kw, sw) : valid_padding(w, kw, sw)).out;
    l.out_c = out_c;
    h = l.out_h, w = l.out_w, c = l.out_c;
  };

  KerasLayer& c0 = add(KerasLayerType::kConv2D, "Conv2D", "c0", "conv2d");
  c0.filters = 4;
  conv_geometry(c0, 3, 2, 2, 1, /*same=*/false, 4);
  c0.vars = {tensor({3, 2, 2, 4}), tensor({4}, 0.0f, 0.1f)};

  KerasLayer& bn =
      add(KerasLayerType::kBatchNormalization, "BatchNormalization", "bn0", "batch_normalization");
  bn.epsilon = 0.001;
  bn.vars = {tensor({4}, 1.0f, 0.2f), tensor({4}, 0.0f, 0.1f), tensor({4}, 0.0f, 0.1f),
             tensor({4}, 1.0f, 0.5f)};

  KerasLayer& act0 = add(KerasLayerType::kActivation, "Activation", "act0", "activation");
  act0.relu = true;

  KerasLayer& dw =
      add(KerasLayerType::kDepthwiseConv2D, "DepthwiseConv2D", "dw", "depthwise_conv2d");
  dw.use_bias = false;
  conv_geometry(dw, 3, 3, 1, 1, /*same=*/true, c);
  dw.vars = {tensor({3, 3, 4, 1})};

  KerasLayer& sep =
      add(KerasLayerType::kSeparableConv2D, "SeparableConv2D", "sep", "separable_conv2d");
  sep.filters = 5;
  const int sep_in_c = c;
  conv_geometry(sep, 3, 3, 2, 2, /*same=*/true, 5);
  sep.vars = {tensor({3, 3, sep_in_c, 1}), tensor({1, 1, sep_in_c, 5}), tensor({5}, 0.0f, 0.1f)};

  add(KerasLayerType::kActivation, "Activation", "act1", "activation_1").relu = false;

  KerasLayer& flat = add(KerasLayerType::kFlatten, "Flatten", "flat", "flatten");
  flat.out_h = flat.out_w = 1;
  flat.out_c = h * w * c;
  h = w = 1, c = flat.out_c;

  KerasLayer& dense = add(KerasLayerType::kDense, "Dense", "out", "dense");
  dense.filters = dense.out_c = 3;
  dense.vars = {tensor({c, 3}, 0.0f, 0.1f), tensor({3}, 0.0f, 0.1f)};
  return g;
}

}  // namespace stimloop::test
