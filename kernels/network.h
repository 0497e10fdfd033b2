// A network as the backends see it: a chain of ops with their weights, BatchNorm already folded
// and ReLU fused. Built by models/ from a .keras file (or the demo generator); backends copy it to
// wherever they compute (host memory, device memory) once, at upload.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/layer_params.h"

namespace stimloop {

struct NetworkLayer {
  std::string name;  // the Keras layer it came from, e.g. "layer1_conv" (pointwise half)
  LayerParams params;
  std::vector<float> weights;  // layout per LayerKind (see layer_params.h)
  std::vector<float> bias;     // out_c values, or empty when !params.has_bias
};

struct Network {
  int in_h = 0, in_w = 0, in_c = 0;
  std::vector<NetworkLayer> layers;

  std::int64_t input_size() const { return std::int64_t{in_h} * in_w * in_c; }
  // Number of outputs per image: the element count of the last layer's output.
  std::int64_t num_outputs() const { return layers.empty() ? 0 : layers.back().params.out_size(); }
  std::int64_t macs() const;
};

}  // namespace stimloop
