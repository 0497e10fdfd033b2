#include "client/cli/cli_common.h"

#include <omp.h>

#include <iostream>

#include "common/version.h"
#include "models/preprocess.h"

namespace stimloop::cli {

StatusOr<std::unique_ptr<Backend>> make_backend(const CommonOptions& options) {
  if (options.threads < 0 || options.threads > 1024) {
    return invalid_argument("--threads must be between 0 (all cores) and 1024");
  }
  if (options.threads > 0) omp_set_num_threads(options.threads);
  return stimloop::make_backend(options.backend);
}

StatusOr<std::unique_ptr<ModelRepository>> open_repository(const CommonOptions& options) {
  ASSIGN_OR_RETURN(auto repository,
                   ModelRepository::open(default_models_directory(options.models_dir)));
  for (const auto& warning : repository->warnings()) {
    std::cerr << "stimloop: warning: " << warning << "\n";
  }
  return repository;
}

StatusOr<LoadedImages> load_images(const std::vector<std::string>& paths, const Model& model,
                                   bool resize) {
  const ModelInfo& info = model.info;
  if (paths.empty()) return invalid_argument("no images given");
  if (info.in_c != 3) {
    return invalid_argument("model " + info.id + " takes " + std::to_string(info.in_c) +
                            " input channels; only RGB (3) images are supported");
  }
  LoadedImages loaded;
  loaded.paths = paths;
  for (const auto& path : paths) {
    ASSIGN_OR_RETURN(Rgb8Image image, read_rgb8(path));
    if (image.height != info.in_h || image.width != info.in_w) {
      if (!resize) {
        return invalid_argument("image " + path + " is " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + "; model " + info.id + " takes " +
                                std::to_string(info.in_w) + "x" + std::to_string(info.in_h) +
                                " RGB (use --resize to rescale)");
      }
      image = resize_rgb8(image, info.in_h, info.in_w);
    }
    loaded.raw.insert(loaded.raw.end(), image.pixels.begin(), image.pixels.end());
  }
  loaded.input = recenter_rgb8(loaded.raw, model.channel_means);
  return loaded;
}

nlohmann::json model_info_json(const ModelInfo& info) {
  return {
      {"id", info.id},
      {"demo", info.demo},
      {"description", info.description},
      {"outputs", info.num_outputs},
      {"input_shape", {info.in_h, info.in_w, info.in_c}},
      {"filters", info.filters},
      {"parameters", info.parameters},
      {"macs_per_image", info.macs_per_image},
      {"sha256", info.sha256},
      {"source", info.source},
  };
}

int report_error(const Status& status) {
  std::cerr << "stimloop: error: " << status.message() << " [" << status_code_name(status.code())
            << "]\n";
  return kExitFailure;
}

std::string stimloop_version() { return version(); }

}  // namespace stimloop::cli
