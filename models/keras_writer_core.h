// Writing .keras files: the Keras 3 config.json of a layer chain, a model.weights.h5 laid out as
// Keras saves it, and the zip around them. Used by write_keras (models/keras_export.h) and by the
// tests' fixture writer (tests/support/keras_writer.h), which also writes deliberately broken
// files; hence every piece is exposed separately (a test corrupts exactly one of them).
// Includes nlohmann/json: meant for models/ and tests, not for code that only exports a model.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/keras_graph.h"

namespace stimloop {

// ---- config.json ----------------------------------------------------------------------------

// The whole config.json of a Keras 3 Functional model: an InputLayer "image_input" with
// batch_shape [null, h, w, c], then every layer of `graph` with its class_name, config (name,
// filters, kernel_size, strides, padding, ...), inbound_nodes whose keras_history names the
// layer before it, and output_layers naming the last layer.
nlohmann::json keras_config_json(const KerasGraph& graph);

// The entry of config.json for one layer, taking its input from the layer named `previous`.
// A Dense layer's input is (batch, features): it follows a Flatten or another Dense.
nlohmann::json keras_layer_json(const KerasLayer& layer, const std::string& previous);

// Keras 3's auto-name of a layer class, the base of its HDF5 group ("SeparableConv2D" ->
// "separable_conv2d"); empty for a class stimloop does not write.
std::string keras_auto_name(KerasLayerType type);

// Sets every layer's weights_group as Keras numbers them on save: the class's auto-name for its
// first layer, then _1, _2, ... per class, in order (what the loader looks up).
void assign_weights_groups(KerasGraph& graph);

// ---- model.weights.h5 -----------------------------------------------------------------------

enum class H5Type { kFloat32, kFloat64, kInt32 };

struct H5Dataset {
  std::string path;  // absolute, e.g. "/layers/conv2d/vars/0"
  std::vector<std::int64_t> shape;
  std::vector<double> values;  // row-major, converted to `type` when written
  H5Type type = H5Type::kFloat32;
  bool write_data = true;  // false: declare the dataset but never allocate or write its storage
};

struct H5Contents {
  std::vector<std::string> groups;  // created even when empty ("/layers/activation/vars")
  std::vector<H5Dataset> datasets;
};

// What Keras writes for `graph`: /layers/<weights_group>/vars/<i> for every var of every layer
// (float32), the empty vars groups of weightless layers, /layers/input_layer/vars and /vars.
H5Contents keras_weights_contents(const KerasGraph& graph);

// The bytes of an HDF5 file holding `contents`, built in memory (core driver, no backing file).
// INTERNAL naming the object HDF5 refused; INVALID_ARGUMENT when a dataset's value count does not
// match its shape.
StatusOr<std::vector<std::uint8_t>> h5_file_image(const H5Contents& contents);

// Debian's libhdf5 is built without thread safety: the writer holds this lock around every HDF5
// call. The reader (hdf5_weights.cpp) keeps its own lock for now, so a write concurrent with a
// load is not yet excluded; both should take this one.
std::mutex& hdf5_library_mutex();

// ---- the zip --------------------------------------------------------------------------------

struct ZipMember {
  std::string name;
  std::vector<std::uint8_t> data;
  bool deflate = false;  // Keras stores members uncompressed; deflate on request
};

// Writes a zip holding exactly `members`, in order (no fsync; see write_keras for that).
Status write_zip(const std::string& path, const std::vector<ZipMember>& members);

// A .keras archive: metadata.json (Keras version and `date_saved`), config.json (`config_text`)
// and model.weights.h5 (`h5`), followed by any `extra` members.
Status write_keras_zip(const std::string& path, const std::string& config_text,
                       const std::vector<std::uint8_t>& h5,
                       const std::vector<ZipMember>& extra = {},
                       const std::string& date_saved = "synthetic");

}  // namespace stimloop
