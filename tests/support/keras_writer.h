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
#include "models/keras_writer_core.h"

namespace stimloop::test {

// ---- config.json ----------------------------------------------------------------------------

// The writer itself is library code (models/keras_writer_core.h), shared with write_keras; these
// declarations keep the fixtures' names (stimloop::test::...) working.

// The whole config.json of a Keras 3 Functional model (keras_config_json) and one layer's entry
// taking its input from the layer named `previous` (keras_layer_json).
using ::stimloop::keras_config_json;
using ::stimloop::keras_layer_json;

// The layer entry with config.name == `name` inside a config built by keras_config_json (throws
// std::out_of_range when there is none), so tests can edit one option in place.
nlohmann::json& config_layer(nlohmann::json& config, const std::string& name);

// ---- model.weights.h5 -----------------------------------------------------------------------

using H5Type = ::stimloop::H5Type;
using H5Dataset = ::stimloop::H5Dataset;
using H5Contents = ::stimloop::H5Contents;

// What Keras writes for `graph`: /layers/<weights_group>/vars/<i> for every var of every layer
// (float32), the empty vars groups of weightless layers, /layers/input_layer/vars and /vars.
using ::stimloop::keras_weights_contents;

// The bytes of an HDF5 file holding `contents`, built in memory (core driver, no backing file).
// Aborts the test (Catch FAIL) if HDF5 refuses.
std::vector<std::uint8_t> h5_file_bytes(const H5Contents& contents);

// h5_file_bytes(keras_weights_contents(graph)).
std::vector<std::uint8_t> keras_weights_h5(const KerasGraph& graph);

// Finds a dataset by path in `contents` (throws std::out_of_range when absent).
H5Dataset& h5_dataset(H5Contents& contents, const std::string& path);

// ---- the zip --------------------------------------------------------------------------------

using ZipMember = ::stimloop::ZipMember;

// Writes a zip holding exactly `members`, in order.
using ::stimloop::write_zip;

// A .keras archive: metadata.json, config.json (`config_text`) and model.weights.h5 (`h5`),
// followed by any `extra` members (and the library's optional date_saved, "synthetic").
using ::stimloop::write_keras_zip;

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
