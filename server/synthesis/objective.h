// Objectives: what a synthesis run maximises, as a function of the network's outputs. Each gives
// a value per image (always maximised; 'min' and 'down' negate) and its derivative with respect
// to the outputs, which the backend turns into the input gradient (ResidentNetwork's
// vector_jacobian). The channel objective runs on a network truncated after the chosen layer.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "kernels/network.h"
#include "server/synthesis/request.h"

namespace stimloop::synthesis {

class Objective {
 public:
  virtual ~Objective() = default;
  // outputs: n x num_outputs of the network the objective runs on. Fills values (n) and
  // seed = d value / d outputs (n x num_outputs).
  virtual void evaluate(std::span<const float> outputs, int n, std::span<double> values,
                        std::span<float> seed) const = 0;
  // The quantity a neuroscientist reads for one image: output K for max/min/adversarial, the
  // channel's mean activation, the objective itself for population.
  virtual double response(std::span<const float> outputs) const = 0;
};

// The network an objective runs on: the model's own, or (channel objective) a prefix of it.
struct ObjectiveSetup {
  std::unique_ptr<Objective> objective;
  std::shared_ptr<const Network> network;
  std::string description;  // e.g. "max of output 0", for progress lines
};

// Checks model-dependent ranges (output index, targets, layer/channel, response-vector length)
// with OUT_OF_RANGE / INVALID_ARGUMENT naming the option.
StatusOr<ObjectiveSetup> make_objective(const SynthesisRequest& request,
                                        std::shared_ptr<const Network> model_network);

// Keras-level layers of a network, for --layer: index L is the L-th op that ends a Keras layer
// (a separable convolution's pointwise half, not its depthwise half).
std::vector<int> keras_layer_ends(const Network& network);

}  // namespace stimloop::synthesis
