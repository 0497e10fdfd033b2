// Double-precision references for tests: naive loops, written independently of kernels/cpu
// (backward in scatter form where the CPU kernels gather), so agreement means something.
#pragma once

#include <vector>

#include "kernels/layer_params.h"
#include "kernels/network.h"
#include "models/keras_graph.h"

namespace stimloop::test {

// One op on n images, channels-last; applies p.relu. bias may be empty when !p.has_bias.
std::vector<double> ref_layer_forward(const LayerParams& p, int n, const std::vector<double>& in,
                                      const std::vector<double>& w,
                                      const std::vector<double>& bias);
// d/d(input) given d/d(pre-activation output); ignores p.relu (the caller masks).
std::vector<double> ref_layer_backward_input(const LayerParams& p, int n,
                                             const std::vector<double>& d_out,
                                             const std::vector<double>& w);

struct RefResult {
  std::vector<double> outputs;  // n x num_outputs
  std::vector<double> d_input;  // n x input size; empty when no seed was given
};

// Forward (and, when seed != nullptr, the vector-Jacobian product sum_k seed[i,k] out[i,k]
// back to the input) of a compiled network, in double.
RefResult ref_network(const Network& net, const std::vector<double>& images, int n,
                      const std::vector<double>* seed = nullptr);

// The same on the unfolded Keras graph: BatchNorm applied as Keras does, separable convolutions
// as depthwise then pointwise, Flatten as a reshape, in double. The independent check of
// compile_network's folding.
RefResult ref_keras_graph(const KerasGraph& graph, const std::vector<double>& images, int n,
                          const std::vector<double>* seed = nullptr);

}  // namespace stimloop::test
