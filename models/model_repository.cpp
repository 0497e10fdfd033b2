#include "models/model_repository.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "models/demo_model.h"
#include "models/keras_import.h"

namespace fs = std::filesystem;

namespace stimloop {
namespace {

// "neuron2" < "neuron10": compare digit runs by value.
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      std::size_t i2 = i, j2 = j;
      while (i2 < a.size() && std::isdigit(static_cast<unsigned char>(a[i2]))) ++i2;
      while (j2 < b.size() && std::isdigit(static_cast<unsigned char>(b[j2]))) ++j2;
      const std::string da = a.substr(i, i2 - i), db = b.substr(j, j2 - j);
      if (da.size() != db.size()) return da.size() < db.size();
      if (da != db) return da < db;
      i = i2, j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::open(const std::string& directory) {
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository());
  repo->directory_ = directory;
  if (directory.empty()) {
    repo->ids_ = {kDemoModelId, kDemoPopulationModelId};
    return repo;
  }
  std::error_code ec;
  if (!fs::is_directory(directory, ec)) {
    return not_found("model directory " + directory + " does not exist or is not a directory");
  }
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (entry.path().extension() != ".keras" || !entry.is_regular_file(ec)) continue;
    const std::string id = entry.path().stem().string();
    if (id.empty() || is_demo_id(id)) continue;
    repo->paths_[id] = entry.path().string();
    repo->ids_.push_back(id);
  }
  if (ec) return not_found("cannot list model directory " + directory + ": " + ec.message());
  std::sort(repo->ids_.begin(), repo->ids_.end(), natural_less);
  return repo;
}

StatusOr<std::shared_ptr<const Model>> ModelRepository::get(const std::string& id) {
  if (is_demo_id(id)) return demo_model_by_id(id);
  const auto path = paths_.find(id);
  if (path == paths_.end()) {
    return not_found("unknown model id '" + id + "'" +
                     (directory_.empty() ? " (no model directory: give --models DIR or set "
                                           "STIMLOOP_MODELS; only 'demo' and 'demo_population' "
                                           "are built in)"
                                         : " in " + directory_));
  }
  {
    std::lock_guard lock(mutex_);
    if (auto hit = cache_.find(id); hit != cache_.end()) return hit->second;
  }
  ASSIGN_OR_RETURN(auto model, load_keras_model(path->second, id));
  std::lock_guard lock(mutex_);
  cache_[id] = model;
  return model;
}

StatusOr<std::vector<std::shared_ptr<const Model>>> ModelRepository::load_all() {
  std::vector<std::shared_ptr<const Model>> models;
  for (const auto& id : ids_) {
    ASSIGN_OR_RETURN(auto model, get(id));
    models.push_back(std::move(model));
  }
  return models;
}

StatusOr<std::shared_ptr<const Model>> resolve_model(const std::string& spec,
                                                     ModelRepository& repository) {
  if (spec.empty()) return invalid_argument("--model is empty");
  std::error_code ec;
  const bool looks_like_path =
      spec.find('/') != std::string::npos || fs::path(spec).extension() == ".keras";
  if (looks_like_path) {
    if (!fs::is_regular_file(spec, ec)) return not_found("model file " + spec + " does not exist");
    return load_keras_model(spec);
  }
  return repository.get(spec);
}

std::string default_models_directory(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* env = std::getenv("STIMLOOP_MODELS");
  return env != nullptr ? std::string(env) : std::string();
}

}  // namespace stimloop
