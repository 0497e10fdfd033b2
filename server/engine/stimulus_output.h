// A finished stimulus as it leaves the engine: the 8-bit pixels, the PNG (display size applied),
// their hashes and the full JSON record. Shared by the server and the CLI's local mode, so both
// produce byte-identical PNGs and records.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
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

// Writes the PNG and then its record (with "png" set to `png_path`), each to a synced temporary
// renamed into place, replacing files of those names: a record always means a complete PNG, and
// a failure (a full disk) leaves neither file new. The CLI's outputs.
Status write_stimulus_files(const std::string& png_path, const SynthesisOutput& output);

// The server's copy in `directory`: <request_id>_<k>.png and .json, or, when a request with the
// same id already wrote those, <request_id>_<k>.<n>.png/.json with the first free n >= 2 (a name
// is never reused, so no request overwrites another's files). `generation` is the n to try first
// (0 = none), updated to the one used, so that one request's stimuli share it. Returns the PNG's
// path. Same order and guarantees as write_stimulus_files.
StatusOr<std::string> save_stimulus(const std::string& directory, const std::string& request_id,
                                    int& generation, const SynthesisOutput& output);

}  // namespace stimloop::engine
