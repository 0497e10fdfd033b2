#include "client/cli/synthesis_job.h"

#include <unistd.h>

#include <cstdio>

#include "common/sha256.h"

namespace stimloop::cli {

std::string with_suffix(const std::string& png_path, const std::string& suffix) {
  if (suffix.empty()) return png_path;
  return png_path.substr(0, png_path.size() - 4) + "_" + suffix + ".png";
}

std::string record_path(const std::string& png_path) {
  return png_path.substr(0, png_path.size() - 4) + ".json";
}

Status encode_stimulus(const synthesis::SynthesisRequest& request, int height, int width,
                       SynthesisOutput& out) {
  Rgb8Image image;
  image.height = height;
  image.width = width;
  image.pixels = out.stimulus.pixels;
  out.files.pixels_sha256 = sha256_hex(image.pixels);
  if (request.display_size > 0 && (request.display_size != width || width != height)) {
    image = upscale_nearest(image, request.display_size, request.display_size);
  }
  ASSIGN_OR_RETURN(out.png, encode_png(image));
  out.files.png_sha256 = sha256_hex(out.png);
  out.files.width = image.width;
  out.files.height = image.height;
  return Status::Ok();
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
  const synthesis::ModelIdentity identity{model.info.id, model.info.sha256, model.info.source,
                                          model.info.demo};
  std::vector<SynthesisOutput> outputs;
  for (auto& st : result.stimuli) {
    SynthesisOutput out;
    out.stimulus = st;
    RETURN_IF_ERROR(encode_stimulus(request, model.info.in_h, model.info.in_w, out));
    out.record = synthesis::make_record(request, identity, backend.name(), result, st, out.files);
    outputs.push_back(std::move(out));
  }
  return outputs;
}

}  // namespace stimloop::cli
