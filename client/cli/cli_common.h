// Pieces the local CLI commands share: model directory and backend options, loading images into
// model input, JSON descriptions of models.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "kernels/backend.h"
#include "models/model.h"
#include "models/model_repository.h"

namespace stimloop::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;

// --server and friends: run the command on a stimloop-server instead of in this process.
struct RemoteOptions {
  std::string server;  // HOST:PORT; empty: local mode
  std::string tls_ca, tls_cert, tls_key, tls_server_name, token_file;
  std::string priority = "interactive";  // rig, interactive, campaign
};

struct CommonOptions {
  std::string models_dir;  // --models; empty falls back to $STIMLOOP_MODELS, then the demo
  std::string backend = "cpu";
  int threads = 0;  // 0: all cores
  RemoteOptions remote;
  bool is_remote() const { return !remote.server.empty(); }
};

// Applies --threads and makes the backend named by --backend.
StatusOr<std::unique_ptr<Backend>> make_backend(const CommonOptions& options);
StatusOr<std::unique_ptr<ModelRepository>> open_repository(const CommonOptions& options);

// Reads images as model input (n x h x w x 3, re-centered). Without `resize`, any size other
// than the model's input is an error naming the file.
struct LoadedImages {
  std::vector<std::string> paths;
  std::vector<std::uint8_t> raw;  // n x h x w x 3
  std::vector<float> input;       // re-centered
};
StatusOr<LoadedImages> load_images(const std::vector<std::string>& paths, const Model& model,
                                   bool resize);

nlohmann::json model_info_json(const ModelInfo& info);

// Prints "error: <message>" to stderr and returns kExitFailure.
int report_error(const Status& status);

std::string stimloop_version();

}  // namespace stimloop::cli
