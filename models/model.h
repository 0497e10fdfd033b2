// A model as stimloop serves it: identity and provenance (id, SHA-256, demo or published), the
// facts a listing shows, the re-centering means, and the compiled network the backends run.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/network.h"

namespace stimloop {

// Per-channel means subtracted from raw 0-255 RGB before the first layer (domain.md).
inline constexpr std::array<float, 3> kV4ChannelMeans = {116.222f, 109.270f, 100.381f};

struct ModelInfo {
  std::string id;      // file stem, e.g. "compact_model_190923_neuron0"
  std::string source;  // file path, or "built-in" for the demo
  std::string sha256;  // of the .keras file (of the generated weights for the demo)
  bool demo = false;   // the procedural demo model, not a model of a real neuron
  std::string description;
  int in_h = 0, in_w = 0, in_c = 0;
  int num_outputs = 0;
  std::vector<int> filters;  // output channels of each Conv2D / SeparableConv2D layer
  std::int64_t parameters = 0;
  std::int64_t macs_per_image = 0;
};

struct Model {
  ModelInfo info;
  std::array<float, 3> channel_means = kV4ChannelMeans;
  std::shared_ptr<const Network> network;
};

}  // namespace stimloop
