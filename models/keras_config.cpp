#include "models/keras_config.h"

#include <map>
#include <nlohmann/json.hpp>

#include "kernels/layer_params.h"

namespace stimloop {
namespace {

using nlohmann::json;

struct LayerTypeInfo {
  KerasLayerType type;
  const char* auto_name;  // Keras' snake_case base for the HDF5 group
};

const std::map<std::string, LayerTypeInfo>& supported_layers() {
  static const std::map<std::string, LayerTypeInfo> kTable = {
      {"Conv2D", {KerasLayerType::kConv2D, "conv2d"}},
      {"SeparableConv2D", {KerasLayerType::kSeparableConv2D, "separable_conv2d"}},
      {"DepthwiseConv2D", {KerasLayerType::kDepthwiseConv2D, "depthwise_conv2d"}},
      {"BatchNormalization", {KerasLayerType::kBatchNormalization, "batch_normalization"}},
      {"Activation", {KerasLayerType::kActivation, "activation"}},
      {"Flatten", {KerasLayerType::kFlatten, "flatten"}},
      {"Dense", {KerasLayerType::kDense, "dense"}},
  };
  return kTable;
}

// Thrown inside this file only, turned into a Status at the bottom of parse_keras_config.
struct ConfigError {
  std::string message;
};

[[noreturn]] void fail(const std::string& message) { throw ConfigError{message}; }

std::string describe(const json& layer) {
  std::string name = layer.value("name", std::string("?"));
  if (layer.contains("config") && layer["config"].is_object()) {
    name = layer["config"].value("name", name);
  }
  return "layer '" + name + "' (" + layer.value("class_name", std::string("?")) + ")";
}

int positive_int(const json& value, const std::string& what, int max_value) {
  if (!value.is_number_integer()) fail(what + " must be an integer, got " + value.dump());
  const auto v = value.get<std::int64_t>();
  if (v < 1 || v > max_value) {
    fail(what + " = " + std::to_string(v) + " is outside 1.." + std::to_string(max_value));
  }
  return static_cast<int>(v);
}

std::pair<int, int> int_pair(const json& cfg, const char* key, int max_value) {
  if (!cfg.contains(key)) fail(std::string("missing ") + key);
  const json& v = cfg[key];
  if (v.is_number_integer()) {
    const int x = positive_int(v, key, max_value);
    return {x, x};
  }
  if (!v.is_array() || v.size() != 2) fail(std::string(key) + " must be two integers");
  return {positive_int(v[0], key, max_value), positive_int(v[1], key, max_value)};
}

void require_option(const json& cfg, const char* key, const json& allowed_value) {
  if (!cfg.contains(key) || cfg[key].is_null()) return;  // Keras default applies
  if (cfg[key] != allowed_value) {
    fail(std::string("unsupported ") + key + " " + cfg[key].dump() + " (only " +
         allowed_value.dump() + " is supported)");
  }
}

void require_linear_activation(const json& cfg) {
  if (!cfg.contains("activation") || cfg["activation"].is_null()) return;
  if (cfg["activation"] != "linear") {
    fail("unsupported activation " + cfg["activation"].dump() +
         " inside the layer (only \"linear\"; use a separate Activation layer)");
  }
}

void parse_conv_options(const json& cfg, KerasLayer& layer, const ImportLimits& limits) {
  const auto [kh, kw] = int_pair(cfg, "kernel_size", limits.max_kernel);
  const auto [sh, sw] = int_pair(cfg, "strides", limits.max_kernel);
  layer.k_h = kh;
  layer.k_w = kw;
  layer.stride_h = sh;
  layer.stride_w = sw;
  const std::string padding = cfg.value("padding", std::string("valid"));
  if (padding != "same" && padding != "valid") fail("unsupported padding \"" + padding + "\"");
  layer.same_padding = padding == "same";
  require_option(cfg, "data_format", "channels_last");
  require_option(cfg, "dilation_rate", json::array({1, 1}));
  require_option(cfg, "groups", 1);
  require_option(cfg, "depth_multiplier", 1);
  require_linear_activation(cfg);
  layer.use_bias = cfg.value("use_bias", true);
}

void set_conv_output(KerasLayer& layer, int out_c) {
  const AxisGeometry gy = layer.same_padding ? same_padding(layer.in_h, layer.k_h, layer.stride_h)
                                             : valid_padding(layer.in_h, layer.k_h, layer.stride_h);
  const AxisGeometry gx = layer.same_padding ? same_padding(layer.in_w, layer.k_w, layer.stride_w)
                                             : valid_padding(layer.in_w, layer.k_w, layer.stride_w);
  if (gy.out < 1 || gx.out < 1) {
    fail("kernel " + std::to_string(layer.k_h) + "x" + std::to_string(layer.k_w) +
         " is larger than its " + std::to_string(layer.in_h) + "x" + std::to_string(layer.in_w) +
         " input with 'valid' padding");
  }
  layer.out_h = gy.out;
  layer.out_w = gx.out;
  layer.out_c = out_c;
}

void parse_input_layer(const json& layer, KerasGraph& graph, const ImportLimits& limits) {
  const json& cfg = layer.at("config");
  const json* shape = nullptr;
  if (cfg.contains("batch_shape"))
    shape = &cfg["batch_shape"];
  else if (cfg.contains("batch_input_shape"))
    shape = &cfg["batch_input_shape"];
  if (shape == nullptr || !shape->is_array() || shape->size() != 4) {
    fail("input must have a batch shape (batch, height, width, channels)");
  }
  graph.in_h = positive_int((*shape)[1], "input height", limits.max_image_side);
  graph.in_w = positive_int((*shape)[2], "input width", limits.max_image_side);
  graph.in_c = positive_int((*shape)[3], "input channels", limits.max_channels);
  // Checked like every layer's output, so no later size product (Flatten's) can overflow an int.
  const std::int64_t elements = std::int64_t{graph.in_h} * graph.in_w * graph.in_c;
  if (elements > limits.max_activation_elements) {
    fail("input of " + std::to_string(elements) + " values per image exceeds the limit");
  }
  require_option(cfg, "dtype", "float32");
  if (cfg.value("sparse", false)) fail("sparse inputs are not supported");
}

// Checks that `layer` takes exactly one input, the output of `previous`.
void check_chain(const json& layer, const std::string& previous) {
  const json& nodes = layer.at("inbound_nodes");
  if (!nodes.is_array() || nodes.size() != 1) {
    fail("must be called exactly once (shared or multiply-used layers are not supported)");
  }
  const json& args = nodes[0].at("args");
  if (!args.is_array() || args.size() != 1 || !args[0].is_object()) {
    fail("must take exactly one input tensor (only single-chain models are supported)");
  }
  const json& history = args[0].at("config").at("keras_history");
  if (!history.is_array() || history.empty() || history[0] != previous) {
    fail("takes its input from " + history.dump() + ", not from the layer before it ('" + previous +
         "'); only single-chain models are supported");
  }
}

void parse_layer(const json& j, KerasLayer& layer, const ImportLimits& limits) {
  const json& cfg = j.at("config");
  switch (layer.type) {
    case KerasLayerType::kConv2D:
      parse_conv_options(cfg, layer, limits);
      layer.filters = positive_int(cfg.at("filters"), "filters", limits.max_channels);
      set_conv_output(layer, layer.filters);
      break;
    case KerasLayerType::kSeparableConv2D:
      parse_conv_options(cfg, layer, limits);
      layer.filters = positive_int(cfg.at("filters"), "filters", limits.max_channels);
      set_conv_output(layer, layer.filters);
      break;
    case KerasLayerType::kDepthwiseConv2D:
      parse_conv_options(cfg, layer, limits);
      set_conv_output(layer, layer.in_c);
      break;
    case KerasLayerType::kBatchNormalization: {
      const json axis = cfg.value("axis", json(-1));
      const bool last_axis =
          axis == -1 || axis == 3 || axis == json::array({3}) || axis == json::array({-1});
      if (!last_axis) fail("unsupported axis " + axis.dump() + " (only the channel axis)");
      require_option(cfg, "center", true);
      require_option(cfg, "scale", true);
      if (cfg.contains("synchronized") && cfg["synchronized"] == true) {
        fail("unsupported synchronized=true");
      }
      layer.epsilon = cfg.value("epsilon", 0.001);
      if (!(layer.epsilon >= 0.0 && layer.epsilon < 1.0)) {
        fail("epsilon " + cfg["epsilon"].dump() + " is outside [0, 1)");
      }
      layer.out_h = layer.in_h, layer.out_w = layer.in_w, layer.out_c = layer.in_c;
      break;
    }
    case KerasLayerType::kActivation: {
      const json act = cfg.value("activation", json("linear"));
      if (act == "relu")
        layer.relu = true;
      else if (act != "linear")
        fail("unsupported activation " + act.dump());
      layer.out_h = layer.in_h, layer.out_w = layer.in_w, layer.out_c = layer.in_c;
      break;
    }
    case KerasLayerType::kFlatten:
      require_option(cfg, "data_format", "channels_last");
      layer.out_h = 1, layer.out_w = 1;
      layer.out_c = layer.in_h * layer.in_w * layer.in_c;
      break;
    case KerasLayerType::kDense:
      require_linear_activation(cfg);
      layer.use_bias = cfg.value("use_bias", true);
      layer.filters = positive_int(cfg.at("units"), "units", limits.max_channels);
      layer.out_h = layer.in_h, layer.out_w = layer.in_w, layer.out_c = layer.filters;
      break;
  }
}

}  // namespace

std::vector<std::vector<std::int64_t>> expected_var_shapes(const KerasLayer& l) {
  std::vector<std::vector<std::int64_t>> shapes;
  switch (l.type) {
    case KerasLayerType::kConv2D:
      shapes = {{l.k_h, l.k_w, l.in_c, l.filters}};
      if (l.use_bias) shapes.push_back({l.filters});
      break;
    case KerasLayerType::kSeparableConv2D:
      shapes = {{l.k_h, l.k_w, l.in_c, 1}, {1, 1, l.in_c, l.filters}};
      if (l.use_bias) shapes.push_back({l.filters});
      break;
    case KerasLayerType::kDepthwiseConv2D:
      shapes = {{l.k_h, l.k_w, l.in_c, 1}};
      if (l.use_bias) shapes.push_back({l.in_c});
      break;
    case KerasLayerType::kBatchNormalization:
      shapes = {{l.in_c}, {l.in_c}, {l.in_c}, {l.in_c}};
      break;
    case KerasLayerType::kDense:
      shapes = {{l.in_c, l.filters}};
      if (l.use_bias) shapes.push_back({l.filters});
      break;
    case KerasLayerType::kActivation:
    case KerasLayerType::kFlatten:
      break;
  }
  return shapes;
}

StatusOr<KerasGraph> parse_keras_config(const std::string& config_json,
                                        const ImportLimits& limits) {
  const json root = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return data_loss("config.json is not valid JSON");
  KerasGraph graph;
  std::string where = "config.json";
  try {
    const std::string model_class = root.value("class_name", std::string());
    if (model_class != "Functional") {
      fail("unsupported model class \"" + model_class + "\" (only Functional models)");
    }
    const json& layers = root.at("config").at("layers");
    if (!layers.is_array() || layers.size() < 2)
      fail("needs an input layer and at least one layer");
    if (static_cast<int>(layers.size()) > limits.max_layers) {
      fail("has " + std::to_string(layers.size()) + " layers, more than the limit of " +
           std::to_string(limits.max_layers));
    }
    std::map<std::string, int> class_counts;
    std::string previous;
    int h = 0, w = 0, c = 0;
    std::int64_t parameters = 0;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const json& j = layers[i];
      where = describe(j);
      const std::string class_name = j.at("class_name").get<std::string>();
      const std::string name = j.at("config").at("name").get<std::string>();
      if (i == 0) {
        if (class_name != "InputLayer") fail("the first layer must be an InputLayer");
        parse_input_layer(j, graph, limits);
        h = graph.in_h, w = graph.in_w, c = graph.in_c;
        previous = j.value("name", name);
        continue;
      }
      if (class_name == "InputLayer") fail("a second InputLayer is not supported");
      const auto it = supported_layers().find(class_name);
      if (it == supported_layers().end()) fail("unsupported layer type " + class_name);
      check_chain(j, previous);

      KerasLayer layer;
      layer.type = it->second.type;
      layer.class_name = class_name;
      layer.name = name;
      const int count = class_counts[it->second.auto_name]++;
      layer.weights_group = std::string(it->second.auto_name) +
                            (count == 0 ? std::string() : "_" + std::to_string(count));
      layer.in_h = h, layer.in_w = w, layer.in_c = c;
      parse_layer(j, layer, limits);
      if (layer.out_c > limits.max_channels && layer.type != KerasLayerType::kFlatten) {
        fail("has " + std::to_string(layer.out_c) + " channels, more than the limit");
      }
      const std::int64_t elements = std::int64_t{layer.out_h} * layer.out_w * layer.out_c;
      if (elements > limits.max_activation_elements) {
        fail("output of " + std::to_string(elements) + " values per image exceeds the limit");
      }
      for (const auto& shape : expected_var_shapes(layer)) {
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        parameters += n;
      }
      if (parameters > limits.max_parameters) {
        fail("model exceeds the limit of " + std::to_string(limits.max_parameters) + " parameters");
      }
      h = layer.out_h, w = layer.out_w, c = layer.out_c;
      previous = j.value("name", name);
      graph.layers.push_back(std::move(layer));
    }
    where = "config.json";
    const json& outputs = root.at("config").at("output_layers");
    const json& first_output =
        outputs.is_array() && !outputs.empty() && outputs[0].is_array() ? outputs[0] : outputs;
    if (!first_output.is_array() || first_output.empty() || first_output[0] != previous) {
      fail("the model output must be the last layer ('" + previous + "'), got " + outputs.dump());
    }
  } catch (const ConfigError& e) {
    const bool unsupported = e.message.rfind("unsupported", 0) == 0;
    return Status(unsupported ? StatusCode::kUnimplemented : StatusCode::kDataLoss,
                  where + ": " + e.message);
  } catch (const json::exception& e) {
    return data_loss(where + ": malformed config (" + e.what() + ")");
  }
  return graph;
}

}  // namespace stimloop
