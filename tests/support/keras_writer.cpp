#include "tests/support/keras_writer.h"

#include <hdf5.h>
#include <zip.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "kernels/layer_params.h"

namespace stimloop::test {
namespace {

using nlohmann::json;

json shape4(int h, int w, int c) { return json::array({nullptr, h, w, c}); }

json initializer(const char* class_name) {
  return {{"module", "keras.initializers"},
          {"class_name", class_name},
          {"config", json::object()},
          {"registered_name", nullptr}};
}

// The options every convolution-like layer carries, in Keras 3's order.
void conv_options(const KerasLayer& l, json& cfg) {
  cfg["kernel_size"] = {l.k_h, l.k_w};
  cfg["strides"] = {l.stride_h, l.stride_w};
  cfg["padding"] = l.same_padding ? "same" : "valid";
  cfg["data_format"] = "channels_last";
  cfg["dilation_rate"] = {1, 1};
}

json layer_config(const KerasLayer& l) {
  json cfg = {{"name", l.name}, {"trainable", true}, {"dtype", "float32"}};
  switch (l.type) {
    case KerasLayerType::kConv2D:
      cfg["filters"] = l.filters;
      conv_options(l, cfg);
      cfg["groups"] = 1;
      cfg["activation"] = "linear";
      cfg["use_bias"] = l.use_bias;
      cfg["kernel_initializer"] = initializer("GlorotUniform");
      cfg["bias_initializer"] = initializer("Zeros");
      cfg["kernel_regularizer"] = nullptr;
      cfg["bias_regularizer"] = nullptr;
      cfg["activity_regularizer"] = nullptr;
      cfg["kernel_constraint"] = nullptr;
      cfg["bias_constraint"] = nullptr;
      break;
    case KerasLayerType::kSeparableConv2D:
      cfg["depth_multiplier"] = 1;
      cfg["filters"] = l.filters;
      conv_options(l, cfg);
      cfg["activation"] = "linear";
      cfg["use_bias"] = l.use_bias;
      cfg["depthwise_initializer"] = initializer("GlorotUniform");
      cfg["pointwise_initializer"] = initializer("GlorotUniform");
      cfg["bias_initializer"] = initializer("Zeros");
      break;
    case KerasLayerType::kDepthwiseConv2D:
      conv_options(l, cfg);
      cfg["depth_multiplier"] = 1;
      cfg["activation"] = "linear";
      cfg["use_bias"] = l.use_bias;
      cfg["depthwise_initializer"] = initializer("GlorotUniform");
      cfg["bias_initializer"] = initializer("Zeros");
      break;
    case KerasLayerType::kBatchNormalization:
      cfg["axis"] = -1;
      cfg["momentum"] = 0.99;
      cfg["epsilon"] = l.epsilon;
      cfg["center"] = true;
      cfg["scale"] = true;
      cfg["beta_initializer"] = initializer("Zeros");
      cfg["gamma_initializer"] = initializer("Ones");
      cfg["moving_mean_initializer"] = initializer("Zeros");
      cfg["moving_variance_initializer"] = initializer("Ones");
      cfg["synchronized"] = false;
      break;
    case KerasLayerType::kActivation:
      cfg["activation"] = l.relu ? "relu" : "linear";
      break;
    case KerasLayerType::kFlatten:
      cfg["data_format"] = "channels_last";
      break;
    case KerasLayerType::kDense:
      cfg["units"] = l.filters;
      cfg["activation"] = "linear";
      cfg["use_bias"] = l.use_bias;
      cfg["kernel_initializer"] = initializer("GlorotUniform");
      cfg["bias_initializer"] = initializer("Zeros");
      break;
  }
  return cfg;
}

[[noreturn]] void hdf5_failure(const std::string& what) {
  FAIL("keras_writer: HDF5 refused to " << what);
  throw std::logic_error("unreachable");  // FAIL throws; keeps [[noreturn]] honest
}

// Closes an HDF5 handle when it goes out of scope.
class H5Handle {
 public:
  H5Handle(hid_t id, herr_t (*close)(hid_t), const std::string& what) : id_(id), close_(close) {
    if (id_ < 0) hdf5_failure(what);
  }
  ~H5Handle() { close_(id_); }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

void check(herr_t status, const std::string& what) {
  if (status < 0) hdf5_failure(what);
}

void write_dataset(hid_t file, hid_t lcpl, const H5Dataset& d) {
  std::vector<hsize_t> dims(d.shape.begin(), d.shape.end());
  const hid_t space_id =
      dims.empty() ? H5Screate(H5S_SCALAR)
                   : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  H5Handle space(space_id, H5Sclose, "create the dataspace of " + d.path);
  hid_t file_type = H5T_IEEE_F32LE;
  if (d.type == H5Type::kFloat64) file_type = H5T_IEEE_F64LE;
  if (d.type == H5Type::kInt32) file_type = H5T_STD_I32LE;
  H5Handle dataset(
      H5Dcreate2(file, d.path.c_str(), file_type, space.get(), lcpl, H5P_DEFAULT, H5P_DEFAULT),
      H5Dclose, "create dataset " + d.path);
  if (!d.write_data) return;
  std::int64_t count = 1;
  for (auto n : d.shape) count *= n;
  if (static_cast<std::int64_t>(d.values.size()) != count) {
    FAIL("keras_writer: " << d.path << " has " << d.values.size() << " values for " << count
                          << " elements");
  }
  if (count == 0) return;
  herr_t status = 0;
  switch (d.type) {
    case H5Type::kFloat32: {
      std::vector<float> v(d.values.begin(), d.values.end());
      status = H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
      break;
    }
    case H5Type::kFloat64:
      status = H5Dwrite(dataset.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                        d.values.data());
      break;
    case H5Type::kInt32: {
      std::vector<std::int32_t> v;
      for (double x : d.values) v.push_back(static_cast<std::int32_t>(x));
      status = H5Dwrite(dataset.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
      break;
    }
  }
  check(status, "write dataset " + d.path);
}

void put_u16(std::vector<std::uint8_t>& out, unsigned v) {
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
  out.push_back(static_cast<std::uint8_t>((v >> 8) & 0xff));
}

}  // namespace

// ---- config.json ----------------------------------------------------------------------------

json keras_layer_json(const KerasLayer& layer, const std::string& previous) {
  // Dense follows Flatten in every model here: its input is (batch, features).
  const json in_shape = layer.type == KerasLayerType::kDense
                            ? json::array({nullptr, layer.in_h * layer.in_w * layer.in_c})
                            : shape4(layer.in_h, layer.in_w, layer.in_c);
  const json tensor = {{"class_name", "__keras_tensor__"},
                       {"config",
                        {{"shape", in_shape},
                         {"dtype", "float32"},
                         {"keras_history", json::array({previous, 0, 0})}}}};
  json kwargs = json::object();
  if (layer.type == KerasLayerType::kBatchNormalization) kwargs["mask"] = nullptr;
  return {{"module", "keras.layers"},
          {"class_name", layer.class_name},
          {"config", layer_config(layer)},
          {"registered_name", nullptr},
          {"build_config", {{"input_shape", in_shape}}},
          {"name", layer.name},
          {"inbound_nodes", json::array({{{"args", json::array({tensor})}, {"kwargs", kwargs}}})}};
}

json keras_config_json(const KerasGraph& graph) {
  json layers = json::array();
  layers.push_back({{"module", "keras.layers"},
                    {"class_name", "InputLayer"},
                    {"config",
                     {{"batch_shape", shape4(graph.in_h, graph.in_w, graph.in_c)},
                      {"dtype", "float32"},
                      {"sparse", false},
                      {"name", "image_input"}}},
                    {"registered_name", nullptr},
                    {"name", "image_input"},
                    {"inbound_nodes", json::array()}});
  std::string previous = "image_input";
  for (const auto& layer : graph.layers) {
    layers.push_back(keras_layer_json(layer, previous));
    previous = layer.name;
  }
  return {{"module", "keras.src.models.functional"},
          {"class_name", "Functional"},
          {"config",
           {{"name", "functional_1"},
            {"trainable", true},
            {"layers", layers},
            {"input_layers", json::array({json::array({"image_input", 0, 0})})},
            {"output_layers", json::array({json::array({previous, 0, 0})})}}},
          {"registered_name", "Functional"},
          {"build_config", {{"input_shape", nullptr}}},
          {"compile_config", {{"loss", "mean_squared_error"}, {"jit_compile", true}}}};
}

json& config_layer(json& config, const std::string& name) {
  for (auto& layer : config.at("config").at("layers")) {
    if (layer.at("config").value("name", std::string()) == name) return layer;
  }
  throw std::out_of_range("config.json has no layer named " + name);
}

// ---- model.weights.h5 -----------------------------------------------------------------------

H5Contents keras_weights_contents(const KerasGraph& graph) {
  H5Contents contents;
  contents.groups.push_back("/layers/input_layer/vars");
  for (const auto& layer : graph.layers) {
    const std::string vars = "/layers/" + layer.weights_group + "/vars";
    if (layer.vars.empty()) contents.groups.push_back(vars);
    for (std::size_t i = 0; i < layer.vars.size(); ++i) {
      const WeightTensor& t = layer.vars[i];
      contents.datasets.push_back({vars + "/" + std::to_string(i), t.shape,
                                   std::vector<double>(t.values.begin(), t.values.end()),
                                   H5Type::kFloat32, true});
    }
  }
  contents.groups.push_back("/vars");
  return contents;
}

std::vector<std::uint8_t> h5_file_bytes(const H5Contents& contents) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  H5Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "create a file access list");
  check(H5Pset_fapl_core(fapl.get(), 1 << 16, /*backing_store=*/0), "select the core driver");
  H5Handle file(H5Fcreate("keras_writer_in_memory.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                H5Fclose, "create an in-memory file");
  H5Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "create a link creation list");
  check(H5Pset_create_intermediate_group(lcpl.get(), 1), "enable intermediate groups");
  for (const auto& group : contents.groups) {
    if (H5Lexists(file.get(), group.c_str(), H5P_DEFAULT) > 0) continue;
    H5Handle g(H5Gcreate2(file.get(), group.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Gclose, "create group " + group);
  }
  for (const auto& dataset : contents.datasets) write_dataset(file.get(), lcpl.get(), dataset);
  check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "flush the in-memory file");
  const ssize_t size = H5Fget_file_image(file.get(), nullptr, 0);
  if (size <= 0) hdf5_failure("report the file image size");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (H5Fget_file_image(file.get(), bytes.data(), bytes.size()) != size) {
    hdf5_failure("copy the file image");
  }
  return bytes;
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

// ---- the zip --------------------------------------------------------------------------------

Status write_zip(const std::string& path, const std::vector<ZipMember>& members) {
  if (members.empty()) {
    // libzip deletes an archive with no entries instead of writing one: write the bare
    // end-of-central-directory record by hand.
    std::vector<std::uint8_t> eocd = {0x50, 0x4b, 0x05, 0x06};
    for (int i = 0; i < 4; ++i) put_u16(eocd, 0);
    for (int i = 0; i < 4; ++i) put_u16(eocd, 0);  // directory size and offset (32-bit each)
    put_u16(eocd, 0);                              // comment length
    return write_bytes(path, eocd);
  }
  int error_code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error_code);
  if (archive == nullptr) {
    zip_error_t error;
    zip_error_init_with_code(&error, error_code);
    std::string message = zip_error_strerror(&error);
    zip_error_fini(&error);
    return internal_error("cannot create " + path + ": " + message);
  }
  for (const auto& member : members) {
    zip_source_t* source = zip_source_buffer(archive, member.data.data(), member.data.size(), 0);
    if (source == nullptr) {
      const std::string message = zip_strerror(archive);
      zip_discard(archive);
      return internal_error("cannot add " + member.name + ": " + message);
    }
    const zip_int64_t index = zip_file_add(archive, member.name.c_str(), source, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(source);
      const std::string message = zip_strerror(archive);
      zip_discard(archive);
      return internal_error("cannot add " + member.name + ": " + message);
    }
    zip_set_file_compression(archive, static_cast<zip_uint64_t>(index),
                             member.deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  if (zip_close(archive) != 0) {
    const std::string message = zip_strerror(archive);
    zip_discard(archive);
    return internal_error("cannot write " + path + ": " + message);
  }
  return Status::Ok();
}

Status write_keras_zip(const std::string& path, const std::string& config_text,
                       const std::vector<std::uint8_t>& h5, const std::vector<ZipMember>& extra) {
  std::vector<ZipMember> members = {
      {"metadata.json", to_bytes(R"({"keras_version": "3.1.1", "date_saved": "synthetic"})")},
      {"config.json", to_bytes(config_text)},
      {"model.weights.h5", h5}};
  members.insert(members.end(), extra.begin(), extra.end());
  return write_zip(path, members);
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
