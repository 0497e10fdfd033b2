// Reads the weight tensors of every layer of a parsed graph from the in-memory model.weights.h5.
#pragma once

#include <cstdint>
#include <vector>

#include "models/keras_graph.h"

namespace stimloop {

// Fills layer.vars for every layer, checking each dataset's rank, dimensions and type against the
// shapes the config implies before reading, and rejecting NaN or infinite weights.
Status read_keras_weights(const std::vector<std::uint8_t>& h5_bytes, KerasGraph& graph);

}  // namespace stimloop
