// The simulated rig's animal: each recorded channel is a virtual neuron, a model output
// evaluated in this process (never on the server under test), whose firing rate is
// gain * max(0, output) spikes per trial; a trial's count is a Poisson draw from that rate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/backend.h"
#include "models/model.h"

namespace stimloop::rigsim {

struct NeuronSpec {
  std::string model;  // model id (in --models or a demo) or a .keras path
  int output = 0;
};
// "MODEL" or "MODEL:OUTPUT".
StatusOr<NeuronSpec> parse_neuron(const std::string& text);

class VirtualNeurons {
 public:
  static StatusOr<std::unique_ptr<VirtualNeurons>> load(const std::vector<NeuronSpec>& specs,
                                                        const std::string& models_dir, double gain);
  int size() const { return static_cast<int>(neurons_.size()); }
  // Expected spike counts (gain * max(0, output)) of every neuron for one 8-bit RGB image.
  StatusOr<std::vector<double>> rates(const std::vector<std::uint8_t>& pixels, int height,
                                      int width);

 private:
  struct Neuron {
    std::shared_ptr<const Model> model;
    std::unique_ptr<ResidentNetwork> network;
    int output = 0;
  };
  std::unique_ptr<Backend> backend_;
  std::vector<Neuron> neurons_;
  double gain_ = 1.0;
};

// A Poisson draw with mean `rate` from the project's xoshiro256** generator (stable everywhere).
int poisson(double rate, std::uint64_t& state);

}  // namespace stimloop::rigsim
