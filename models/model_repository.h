// A directory of .keras files, one model per file, the id being the file stem. Ids are matched
// only against the files found by the scan, so no id can name a path outside the directory.
// The built-in demo models are always reachable as "demo" and "demo_population"; listings
// include them only when no directory is configured.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/model.h"

namespace stimloop {

class ModelRepository {
 public:
  // An empty `directory` gives a repository holding only the demo model.
  static StatusOr<std::unique_ptr<ModelRepository>> open(const std::string& directory);

  const std::string& directory() const { return directory_; }
  // Ids in a stable, natural order (neuron2 before neuron10).
  const std::vector<std::string>& ids() const { return ids_; }
  // What the scan skipped, one line each naming the file (a dangling or looping link, a
  // directory named *.keras, UP.KERAS, a bare .keras), or that the directory holds no models.
  // The caller shows them (the CLI on stderr, the server in its log).
  const std::vector<std::string>& warnings() const { return warnings_; }

  // Loads (once, then cached) the model with this id. NOT_FOUND for unknown ids.
  StatusOr<std::shared_ptr<const Model>> get(const std::string& id);

  // Every model of the listing, loaded; the first failure is returned with its file named.
  StatusOr<std::vector<std::shared_ptr<const Model>>> load_all();

 private:
  std::string directory_;
  std::vector<std::string> ids_;
  std::vector<std::string> warnings_;
  std::map<std::string, std::string> paths_;  // id -> file path
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const Model>> cache_;
};

// Resolves what a user typed after --model: an existing .keras file path, "demo", or an id in
// the repository.
StatusOr<std::shared_ptr<const Model>> resolve_model(const std::string& spec,
                                                     ModelRepository& repository);

// The model directory a command should use: the flag when given, else $STIMLOOP_MODELS, else
// none (demo only).
std::string default_models_directory(const std::string& flag_value);

}  // namespace stimloop
