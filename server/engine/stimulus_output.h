// A finished stimulus as it leaves the engine: the 8-bit pixels, the PNG (display size applied),
// their hashes and the full JSON record. Shared by the server and the CLI's local mode, so both
// produce byte-identical PNGs and records.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "models/model.h"
#include "server/synthesis/record.h"

namespace stimloop::engine {

struct SynthesisOutput {
  synthesis::Stimulus stimulus;
  synthesis::StimulusFiles files;
  std::vector<std::uint8_t> png;  // encoded bytes (display size applied)
  nlohmann::json record;
};

// Encodes the stimulus (upscaled to request.display_size when > 0) and fills files' hashes.
Status encode_stimulus(const synthesis::SynthesisRequest& request, int height, int width,
                       SynthesisOutput& output);

// One output per stimulus of the result, encoded, with its record.
StatusOr<std::vector<SynthesisOutput>> make_outputs(const synthesis::SynthesisRequest& request,
                                                    const ModelInfo& model,
                                                    const std::string& backend_name,
                                                    const synthesis::SynthesisResult& result);

}  // namespace stimloop::engine
