#include "models/model_repository.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "common/durable_file.h"
#include "common/file_checks.h"
#include "common/truncate.h"
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

// The part of a file name before ".keras" in any capitalisation ("" when it has no such
// ending); a bare ".keras" gives ".keras" so that it is reported, not ignored.
std::string model_id_of(const std::string& name) {
  constexpr std::string_view kExt = ".keras";
  if (name.size() < kExt.size()) return "";
  const std::string tail = name.substr(name.size() - kExt.size());
  for (std::size_t i = 0; i < kExt.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(tail[i])) != kExt[i]) return "";
  }
  return name.size() == kExt.size() ? name : name.substr(0, name.size() - kExt.size());
}

// Why the listed entry `path` (model id `id`) cannot be a model, or "" when it can.
std::string why_not_a_model(const std::string& path, const std::string& id) {
  const std::string name = fs::path(path).filename().string();
  if (name == ".keras") return "a file with no name before .keras";
  if (name.substr(name.size() - 6) != ".keras") return "the extension must be lower-case .keras";
  if (is_demo_id(id)) return "'" + id + "' is the id of a built-in demo model";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {  // follows links
    if (errno == ENOENT) return "a symbolic link to nothing (dangling)";
    if (errno == ELOOP) return "a symbolic link that loops";
    return std::string("cannot be examined: ") + std::strerror(errno);
  }
  if (S_ISDIR(st.st_mode)) return "a directory, not a .keras file";
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  return "";
}

}  // namespace

StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::open(const std::string& directory) {
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository());
  repo->directory_ = directory;
  if (directory.empty()) {
    repo->ids_ = {kDemoModelId, kDemoPopulationModelId};
    return repo;
  }
  struct stat st {};
  if (::stat(directory.c_str(), &st) != 0) {
    if (errno == ENOENT) return not_found("model directory " + directory + " does not exist");
    return errno_status(errno, "model directory " + directory);
  }
  if (!S_ISDIR(st.st_mode)) {
    return invalid_argument("model directory " + directory + " is not a directory");
  }
  // One rule for every entry, whatever order the listing has: a name that looks like a model
  // but cannot be one is skipped with a warning naming it.
  std::error_code ec;
  for (fs::directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& path = it->path();
    const std::string id = model_id_of(path.filename().string());
    if (id.empty()) continue;  // not a .keras name in any spelling
    const std::string problem = why_not_a_model(path.string(), id);
    if (!problem.empty()) {
      repo->warnings_.push_back(path.string() + ": " + problem + "; skipped");
      continue;
    }
    repo->paths_[id] = path.string();
    repo->ids_.push_back(id);
  }
  if (ec) return errno_status(ec.value(), "cannot list model directory " + directory);
  if (repo->ids_.empty()) {
    repo->warnings_.push_back("model directory " + directory + " holds no .keras models");
  }
  std::sort(repo->ids_.begin(), repo->ids_.end(), natural_less);
  return repo;
}

StatusOr<std::shared_ptr<const Model>> ModelRepository::get(const std::string& id) {
  if (is_demo_id(id)) return demo_model_by_id(id);
  const auto path = paths_.find(id);
  if (path == paths_.end()) {
    return not_found("unknown model id '" + truncated_id(id) + "'" +
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
    RETURN_IF_ERROR(check_readable_file(spec, "model file"));
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
