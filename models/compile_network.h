// Rewrites a Keras layer chain into the backend op chain: SeparableConv2D becomes depthwise then
// pointwise, BatchNormalization is folded into the convolution before it, Activation('relu') is
// fused into the op before it, Flatten disappears (channels-last memory is already flat), and a
// Dense layer becomes a pointwise op.
#pragma once

#include "kernels/network.h"
#include "models/keras_graph.h"

namespace stimloop {

StatusOr<Network> compile_network(const KerasGraph& graph);

}  // namespace stimloop
