// Running a synthesis request on one model from the command line, and writing what it produced:
// a PNG per stimulus and its JSON record beside it. Shared by `synthesize` and `replay`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/cli/cli_common.h"
#include "server/engine/stimulus_output.h"
#include "server/synthesis/record.h"

namespace stimloop::cli {

using engine::SynthesisOutput;

// Runs `request` on `model`; `show_progress` draws a progress line on stderr.
StatusOr<std::vector<SynthesisOutput>> run_synthesis_job(const synthesis::SynthesisRequest& request,
                                                         const Model& model, Backend& backend,
                                                         bool show_progress,
                                                         int stop_after_steps = -1);

// PATH.png -> PATH_<suffix>.png ("" keeps PATH.png); and .png -> .json.
std::string with_suffix(const std::string& png_path, const std::string& suffix);
std::string record_path(const std::string& png_path);

}  // namespace stimloop::cli
