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
  // Floats one image needs for a forward + backward pass: every layer's output plus two
  // gradient buffers as wide as the widest tensor.
  std::int64_t workspace_floats_per_image() const;
  // How many images fit a workspace of `budget_bytes` (at least 1, at most max_batch).
  int images_per_chunk(std::int64_t budget_bytes, int max_batch) const;
};

}  // namespace stimloop
