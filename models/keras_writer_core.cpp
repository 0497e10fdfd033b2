#include "models/keras_writer_core.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

namespace stimloop {
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

// Closes an HDF5 handle when it goes out of scope; `ok()` is false when creating it failed.
class H5Handle {
 public:
  H5Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Handle() {
    if (id_ >= 0) close_(id_);
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

Status refused(const std::string& what) { return internal_error("HDF5 refused to " + what); }

Status write_dataset(hid_t file, hid_t lcpl, const H5Dataset& d) {
  std::vector<hsize_t> dims(d.shape.begin(), d.shape.end());
  H5Handle space(dims.empty()
                     ? H5Screate(H5S_SCALAR)
                     : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                 H5Sclose);
  if (!space.ok()) return refused("create the dataspace of " + d.path);
  hid_t file_type = H5T_IEEE_F32LE;
  if (d.type == H5Type::kFloat64) file_type = H5T_IEEE_F64LE;
  if (d.type == H5Type::kInt32) file_type = H5T_STD_I32LE;
  H5Handle dataset(
      H5Dcreate2(file, d.path.c_str(), file_type, space.get(), lcpl, H5P_DEFAULT, H5P_DEFAULT),
      H5Dclose);
  if (!dataset.ok()) return refused("create dataset " + d.path);
  if (!d.write_data) return Status::Ok();
  std::int64_t count = 1;
  for (auto n : d.shape) count *= n;
  if (static_cast<std::int64_t>(d.values.size()) != count) {
    return invalid_argument(d.path + " has " + std::to_string(d.values.size()) + " values for " +
                            std::to_string(count) + " elements");
  }
  if (count == 0) return Status::Ok();
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
  return status < 0 ? refused("write dataset " + d.path) : Status::Ok();
}

void put_u16(std::vector<std::uint8_t>& out, unsigned v) {
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
  out.push_back(static_cast<std::uint8_t>((v >> 8) & 0xff));
}

std::vector<std::uint8_t> to_bytes(const std::string& text) { return {text.begin(), text.end()}; }

}  // namespace

// ---- config.json ----------------------------------------------------------------------------

json keras_layer_json(const KerasLayer& layer, const std::string& previous) {
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

std::string keras_auto_name(KerasLayerType type) {
  switch (type) {
    case KerasLayerType::kConv2D:
      return "conv2d";
    case KerasLayerType::kSeparableConv2D:
      return "separable_conv2d";
    case KerasLayerType::kDepthwiseConv2D:
      return "depthwise_conv2d";
    case KerasLayerType::kBatchNormalization:
      return "batch_normalization";
    case KerasLayerType::kActivation:
      return "activation";
    case KerasLayerType::kFlatten:
      return "flatten";
    case KerasLayerType::kDense:
      return "dense";
  }
  return "";
}

void assign_weights_groups(KerasGraph& graph) {
  std::map<std::string, int> counts;
  for (auto& layer : graph.layers) {
    const std::string base = keras_auto_name(layer.type);
    const int n = counts[base]++;
    layer.weights_group = n == 0 ? base : base + "_" + std::to_string(n);
  }
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

std::mutex& hdf5_library_mutex() {
  static std::mutex m;
  return m;
}

StatusOr<std::vector<std::uint8_t>> h5_file_image(const H5Contents& contents) {
  std::lock_guard lock(hdf5_library_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors come back as Status, not stderr noise
  H5Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.ok()) return refused("create a file access list");
  if (H5Pset_fapl_core(fapl.get(), 1 << 16, /*backing_store=*/0) < 0) {
    return refused("select the core driver");
  }
  // The name is never written (no backing store), so concurrent writers cannot collide on it.
  H5Handle file(H5Fcreate("stimloop_in_memory.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                H5Fclose);
  if (!file.ok()) return refused("create an in-memory file");
  H5Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  if (!lcpl.ok() || H5Pset_create_intermediate_group(lcpl.get(), 1) < 0) {
    return refused("enable intermediate groups");
  }
  for (const auto& group : contents.groups) {
    if (H5Lexists(file.get(), group.c_str(), H5P_DEFAULT) > 0) continue;
    H5Handle g(H5Gcreate2(file.get(), group.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Gclose);
    if (!g.ok()) return refused("create group " + group);
  }
  for (const auto& dataset : contents.datasets) {
    RETURN_IF_ERROR(write_dataset(file.get(), lcpl.get(), dataset));
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) return refused("flush the in-memory file");
  const ssize_t size = H5Fget_file_image(file.get(), nullptr, 0);
  if (size <= 0) return refused("report the file image size");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (H5Fget_file_image(file.get(), bytes.data(), bytes.size()) != size) {
    return refused("copy the file image");
  }
  return bytes;
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
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return internal_error("cannot write " + path);
    const bool ok = std::fwrite(eocd.data(), 1, eocd.size(), f) == eocd.size();
    return std::fclose(f) == 0 && ok ? Status::Ok() : internal_error("cannot write " + path);
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
                       const std::vector<std::uint8_t>& h5, const std::vector<ZipMember>& extra,
                       const std::string& date_saved) {
  // Keras' own key order (nlohmann would sort them), as the published files have it.
  const std::string metadata =
      R"({"keras_version": "3.1.1", "date_saved": )" + json(date_saved).dump() + "}";
  std::vector<ZipMember> members = {{"metadata.json", to_bytes(metadata)},
                                    {"config.json", to_bytes(config_text)},
                                    {"model.weights.h5", h5}};
  members.insert(members.end(), extra.begin(), extra.end());
  return write_zip(path, members);
}

}  // namespace stimloop
