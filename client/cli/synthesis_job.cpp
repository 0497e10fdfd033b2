#include "client/cli/synthesis_job.h"

#include <unistd.h>

#include <cstdio>

namespace stimloop::cli {

std::string with_suffix(const std::string& png_path, const std::string& suffix) {
  if (suffix.empty()) return png_path;
  return png_path.substr(0, png_path.size() - 4) + "_" + suffix + ".png";
}

std::string record_path(const std::string& png_path) {
  return png_path.substr(0, png_path.size() - 4) + ".json";
}

StatusOr<std::vector<SynthesisOutput>> run_synthesis_job(const synthesis::SynthesisRequest& request,
                                                         const Model& model, Backend& backend,
                                                         bool show_progress, int stop_after_steps) {
  ASSIGN_OR_RETURN(auto run, synthesis::SynthesisRun::create(request, model.channel_means, backend,
                                                             model.network));
  synthesis::RunControl control;
  if (request.deadline_ms > 0 && stop_after_steps < 0) {
    control.deadline = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double, std::milli>(request.deadline_ms));
  }
  const bool tty = show_progress && isatty(STDERR_FILENO);
  if (tty) {
    control.on_progress = [&](const synthesis::ProgressEvent& e) {
      double best = -1e300;
      for (double v : e.best_response) best = std::isfinite(v) ? std::max(best, v) : best;
      std::fprintf(stderr, "\r%s: %s  step %d/%d  best response %.4g   ", model.info.id.c_str(),
                   run->description().c_str(), e.steps_done, e.steps, best);
    };
  }
  synthesis::SynthesisResult result;
  if (stop_after_steps >= 0) {  // replay: exactly the steps the record did
    for (int i = 0; i < stop_after_steps; ++i) RETURN_IF_ERROR(run->step());
    const auto reason =
        run->done() ? synthesis::StopReason::kCompleted : synthesis::StopReason::kDeadline;
    ASSIGN_OR_RETURN(result, run->finish(reason));
  } else {
    ASSIGN_OR_RETURN(result, synthesis::run_synthesis(*run, control));
  }
  if (tty) std::fprintf(stderr, "\n");
  return engine::make_outputs(request, model.info, backend.name(), result);
}

}  // namespace stimloop::cli
