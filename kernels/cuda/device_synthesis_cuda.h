// The CUDA implementation of DeviceSynthesis (kernels/device_synthesis.h).
#pragma once

#include <memory>
#include <vector>

#include "kernels/device_synthesis.h"

namespace stimloop::cuda {

// Every target's network must be resident on a CUDA backend (custom or cuDNN) and take the same
// h x w x 3 input. Targets on the custom kernels whose networks have the same sequence of layer
// kinds run as one grouped launch per layer; cuDNN targets run one after another.
StatusOr<std::unique_ptr<DeviceSynthesis>> start_device_cowley2026(
    const Cowley2026Settings& settings, const std::vector<SynthesisTarget>& targets);

}  // namespace stimloop::cuda
