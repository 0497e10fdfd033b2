// Writing a model stimloop runs back out as a Keras 3 .keras file, in the published models'
// layout, so that a session's calibrated channels (or any compiled network) can be used without
// stimloop: load_keras_model() reads the file back to the same outputs (to float rounding), and
// keras.models.load_model() reads it too.
//
// The op chain maps back to layers: a dense op -> Conv2D; a depthwise op without bias or ReLU
// directly followed by a pointwise op over its output -> SeparableConv2D; any other depthwise op
// -> DepthwiseConv2D; a pointwise op over a 1x1 image that reads a spatial map -> Flatten +
// Dense (Dense alone after a Dense); any other pointwise op -> a 1x1 Conv2D; a fused ReLU -> a
// separate Activation('relu'). BatchNorm stays folded (no BatchNormalization layers). A last op
// with a 1x1 output gets a Flatten "output_responses" (the shared models' output shape).
#pragma once

#include <string>

#include "common/status.h"
#include "models/keras_graph.h"
#include "models/model.h"

namespace stimloop {

// The layer chain write_keras writes for `network` (names, HDF5 groups, shapes, weights).
// UNIMPLEMENTED naming the op when a convolution's padding is neither TensorFlow 'same' nor
// 'valid', or an op reads its input in a shape no Keras layer chain expresses.
StatusOr<KerasGraph> keras_graph_of(const Network& network);

// Writes `model` to `path` atomically: to path + ".tmp-<pid>", fsynced, renamed over `path`, and
// the directory fsynced. UNIMPLEMENTED as keras_graph_of, and when the model's channel means are
// not the V4 means (a .keras file cannot carry them; the loader assumes the V4 means).
Status write_keras(const Model& model, const std::string& path);

}  // namespace stimloop
