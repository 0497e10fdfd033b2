// Parses config.json of a Keras 3 functional model into the layer chain of a KerasGraph (shapes,
// options, HDF5 group names), rejecting anything stimloop does not implement exactly.
#pragma once

#include <string>
#include <vector>

#include "models/keras_graph.h"

namespace stimloop {

StatusOr<KerasGraph> parse_keras_config(const std::string& config_json, const ImportLimits& limits);

// The shapes of vars/0, vars/1, ... that a layer must have in model.weights.h5.
std::vector<std::vector<std::int64_t>> expected_var_shapes(const KerasLayer& layer);

}  // namespace stimloop
