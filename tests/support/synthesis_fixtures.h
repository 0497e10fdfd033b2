// Fixtures shared by the tests of the device synthesis loop (tests/gpu/) and of the persistent
// step program on the CPU (tests/unit/): the host loop's initial images and a cowley2026 request.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/network.h"
#include "models/model.h"
#include "server/synthesis/request.h"
#include "server/synthesis/rng.h"

namespace stimloop::test {

// The host loop's initial images: noise from Rng(seed + i), re-centered.
inline std::vector<double> initial_images(const Network& net, std::uint64_t seed, int count) {
  const auto& means = kV4ChannelMeans;
  std::vector<double> x;
  for (int i = 0; i < count; ++i) {
    synthesis::Rng rng(seed + static_cast<std::uint64_t>(i));
    for (std::int64_t j = 0; j < net.input_size(); ++j) {
      x.push_back(rng.uniform() * 50.0 + 128.0 - means[j % 3]);
    }
  }
  return x;
}

inline synthesis::SynthesisRequest cowley2026_request(bool maximise, int output, int count,
                                                      std::uint64_t seed, int steps) {
  synthesis::SynthesisRequest r;
  r.objective = maximise ? synthesis::ObjectiveKind::kMax : synthesis::ObjectiveKind::kMin;
  r.output_index = output;
  r.method = synthesis::MethodKind::kCowley2026;
  r.steps = steps;
  r.count = count;
  r.seed = seed;
  return r;
}

inline Cowley2026Settings settings_of(const synthesis::SynthesisRequest& r) {
  return synthesis::cowley2026_settings(r, kV4ChannelMeans);
}

}  // namespace stimloop::test
