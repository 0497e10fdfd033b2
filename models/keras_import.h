// Loading a published .keras file: archive -> config -> weights -> compiled network.
#pragma once

#include <memory>
#include <string>

#include "models/keras_graph.h"
#include "models/model.h"

namespace stimloop {

// The unfolded graph with its weights (tests use it to check the folding).
StatusOr<KerasGraph> load_keras_graph(const std::string& path, const ImportLimits& limits = {});

// The ready-to-upload model; `id` defaults to the file stem. Errors name the file.
StatusOr<std::shared_ptr<const Model>> load_keras_model(const std::string& path,
                                                        const std::string& id = "",
                                                        const ImportLimits& limits = {});

// Builds the listing facts of a compiled model (shapes, filters, parameters, MACs).
ModelInfo describe_model(const KerasGraph& graph, const Network& network);

}  // namespace stimloop
