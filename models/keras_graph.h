// A .keras file as read, before any rewriting: the chain of Keras layers with their options and
// raw weight tensors, BatchNorm still separate. compile_network() turns it into the op chain the
// backends run; tests evaluate this unfolded form directly to check the folding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace stimloop {

struct WeightTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

enum class KerasLayerType {
  kConv2D,
  kSeparableConv2D,
  kDepthwiseConv2D,
  kBatchNormalization,
  kActivation,
  kFlatten,
  kDense,
};

struct KerasLayer {
  KerasLayerType type = KerasLayerType::kConv2D;
  std::string class_name;     // as in config.json, e.g. "SeparableConv2D"
  std::string name;           // the layer's own name, e.g. "layer1_conv"
  std::string weights_group;  // Keras' auto-name, the HDF5 group: "separable_conv2d_1"

  // Shapes (h, w, c) flowing in and out, computed from the input shape.
  int in_h = 0, in_w = 0, in_c = 0;
  int out_h = 0, out_w = 0, out_c = 0;

  // Convolution options.
  int filters = 0;  // output channels of Conv2D/SeparableConv2D, units of Dense
  int k_h = 1, k_w = 1;
  int stride_h = 1, stride_w = 1;
  bool same_padding = false;
  bool use_bias = true;

  double epsilon = 0.001;  // BatchNormalization
  bool relu = false;       // Activation: relu (true) or linear (false)

  // vars/0, vars/1, ... exactly as stored (see docs: kernel, bias; depthwise, pointwise, bias;
  // gamma, beta, moving_mean, moving_variance).
  std::vector<WeightTensor> vars;
};

struct KerasGraph {
  std::string source;  // file path, for messages
  std::string sha256;  // of the whole .keras file
  int in_h = 0, in_w = 0, in_c = 0;
  std::vector<KerasLayer> layers;  // InputLayer excluded

  std::int64_t parameter_count() const;  // every stored weight, BatchNorm statistics included
};

// Hard limits that keep a hostile file from asking for absurd work or memory.
struct ImportLimits {
  std::int64_t max_file_bytes = std::int64_t{256} << 20;
  std::int64_t max_config_bytes = std::int64_t{8} << 20;
  std::int64_t max_weights_bytes = std::int64_t{512} << 20;
  int max_layers = 256;
  int max_image_side = 2048;
  int max_channels = 8192;
  int max_kernel = 256;
  std::int64_t max_activation_elements = std::int64_t{1} << 27;  // per image, per layer
  std::int64_t max_parameters = std::int64_t{1} << 27;
};

}  // namespace stimloop
