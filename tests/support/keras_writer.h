// Writes synthetic .keras files for tests: a Keras-3-style config.json, a model.weights.h5 laid
// out as Keras saves it, and the zip around them. Every piece is exposed separately so a test can
// corrupt exactly one of them (edit the JSON, drop or reshape a dataset, flip bytes in the zip).
// The published files are never copied into the repository; fixtures are generated at test time.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/keras_graph.h"

namespace stimloop::test {

// ---- config.json ----------------------------------------------------------------------------

// The whole config.json of a Keras 3 Functional model: an InputLayer "image_input" with
// batch_shape [null, h, w, c], then every layer of `graph` with its class_name, config (name,
// filters, kernel_size, strides, padding, ...), inbound_nodes whose keras_history names the
// layer before it, and output_layers naming the last layer.
nlohmann::json keras_config_json(const KerasGraph& graph);

// The entry of config.json for one layer, taking its input from the layer named `previous`.
nlohmann::json keras_layer_json(const KerasLayer& layer, const std::string& previous);

// The layer entry with config.name == `name` inside a config built by keras_config_json (throws
// std::out_of_range when there is none), so tests can edit one option in place.
nlohmann::json& config_layer(nlohmann::json& config, const std::string& name);

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
// Aborts the test (Catch FAIL) if HDF5 refuses.
std::vector<std::uint8_t> h5_file_bytes(const H5Contents& contents);

// h5_file_bytes(keras_weights_contents(graph)).
std::vector<std::uint8_t> keras_weights_h5(const KerasGraph& graph);

// Finds a dataset by path in `contents` (throws std::out_of_range when absent).
H5Dataset& h5_dataset(H5Contents& contents, const std::string& path);

// ---- the zip --------------------------------------------------------------------------------

struct ZipMember {
  std::string name;
  std::vector<std::uint8_t> data;
  bool deflate = false;  // Keras stores members uncompressed; deflate on request
};

// Writes a zip holding exactly `members`, in order.
Status write_zip(const std::string& path, const std::vector<ZipMember>& members);

// A .keras archive: metadata.json, config.json (`config_text`) and model.weights.h5 (`h5`),
// followed by any `extra` members.
Status write_keras_zip(const std::string& path, const std::string& config_text,
                       const std::vector<std::uint8_t>& h5,
                       const std::vector<ZipMember>& extra = {});

// The complete file for `graph`.
Status write_keras_file(const std::string& path, const KerasGraph& graph);

// ---- small helpers --------------------------------------------------------------------------

std::vector<std::uint8_t> read_bytes(const std::string& path);  // empty when unreadable
Status write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes);
std::vector<std::uint8_t> to_bytes(const std::string& text);

// A small chain covering every supported layer type and option the demo model does not use:
// Conv2D (valid padding, 3x2 kernel, strides 2x1), BatchNormalization (epsilon 1e-3),
// Activation relu, DepthwiseConv2D without bias, SeparableConv2D (same padding, stride 2),
// Activation linear, Flatten, Dense with 3 units. Input 11x9x2; deterministic weights.
KerasGraph small_keras_graph();

}  // namespace stimloop::test
