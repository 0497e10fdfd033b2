// The JSON record of one synthesized stimulus: everything needed to recompute it (the model's id
// and SHA-256, the full request, the stimulus's seed and index, the steps done) and what came out
// (response of the 8-bit image, trajectory, stop reason, wall time, backend, stimloop version,
// SHA-256 of the PNG and of the raw pixels). `stimloop replay` reads it back.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "server/synthesis/synthesis_run.h"

namespace stimloop::synthesis {

struct ModelIdentity {
  std::string id;
  std::string sha256;
  std::string source;
  bool demo = false;
};

struct StimulusFiles {
  std::string png;            // path of the PNG as written ("" when not written)
  std::string png_sha256;     // of the PNG bytes
  std::string pixels_sha256;  // of the 112x112x3 raw pixels (independent of the PNG encoder)
  int width = 0, height = 0;  // of the PNG (the display size when upscaled)
};

nlohmann::json make_record(const SynthesisRequest& request, const ModelIdentity& model,
                           const std::string& backend, const SynthesisResult& result,
                           const Stimulus& stimulus, const StimulusFiles& files);

// What replay needs back from a record.
struct ParsedRecord {
  SynthesisRequest request;
  ModelIdentity model;
  std::string backend;
  int index = 0;
  int steps_done = 0;
  StopReason stop_reason = StopReason::kCompleted;
  StimulusFiles files;
  double response = 0.0;
};
StatusOr<ParsedRecord> parse_record(const nlohmann::json& record);

}  // namespace stimloop::synthesis
