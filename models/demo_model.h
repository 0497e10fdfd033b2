// The built-in demo model: a procedurally generated network with the compact models'
// architecture (5x5 conv, four 5x5 separable convs at strides 2,2,1,1, BatchNorm, ReLU, Dense),
// so stimloop works on a fresh machine with no downloaded files. Layer 0 holds oriented Gabor
// filters; later layers pool them into orientation-energy channels read out by a Gaussian
// spatial window. It models no real neuron and is labelled as a demo everywhere it appears.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

#include "models/keras_graph.h"
#include "models/model.h"

namespace stimloop {

inline constexpr const char* kDemoModelId = "demo";
// A second demo with four outputs (orientation x quadrant), for population objectives.
inline constexpr const char* kDemoPopulationModelId = "demo_population";

enum class DemoKind { kSingle, kPopulation };

KerasGraph build_demo_graph(DemoKind kind = DemoKind::kSingle);
std::shared_ptr<const Model> demo_model(DemoKind kind = DemoKind::kSingle);
bool is_demo_id(const std::string& id);
StatusOr<std::shared_ptr<const Model>> demo_model_by_id(const std::string& id);

}  // namespace stimloop
