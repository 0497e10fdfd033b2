#include "server/engine/model_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "models/model_repository.h"

namespace stimloop::engine {

StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::load(
    const std::vector<std::string>& directories, bool with_demo, Backend& backend) {
  auto registry = std::unique_ptr<ModelRegistry>(new ModelRegistry(backend));
  std::vector<std::string> sources = directories;
  if (directories.empty() || with_demo) sources.push_back("");  // "" = the demo models
  std::set<std::string> seen;
  for (const std::string& dir : sources) {
    ASSIGN_OR_RETURN(auto repository, ModelRepository::open(dir));
    for (const auto& warning : repository->warnings()) {
      spdlog::warn("event=model_skipped message=\"{}\"", warning);
    }
    ASSIGN_OR_RETURN(auto models, repository->load_all());
    for (auto& model : models) {
      if (!seen.insert(model->info.id).second) {
        return invalid_argument("model id '" + model->info.id + "' is in two --models directories" +
                                " (" + model->info.source + ")");
      }
      auto resident = std::make_shared<ResidentModel>();
      ASSIGN_OR_RETURN(resident->network, backend.upload(model->network));
      resident->model = std::move(model);
      registry->loaded_.push_back(std::move(resident));
    }
  }
  return registry;
}

Status ModelRegistry::warm_up() {
  for (const auto& m : models()) {
    const ModelInfo& info = m->model->info;
    std::vector<float> image(static_cast<std::size_t>(info.in_h) * info.in_w * info.in_c, 0.0f);
    std::vector<float> outputs(info.num_outputs);
    RETURN_IF_ERROR(m->network->forward(image, 1, outputs).with_context(info.id));
  }
  return Status::Ok();
}

StatusOr<ResidentModelPtr> ModelRegistry::find(const std::string& id) const {
  // No model has such an id (file stems and session ids are far shorter): refused before any
  // lookup, and never echoed whole.
  if (id.size() > kMaxModelIdBytes) {
    return invalid_argument("model id '" + truncated_id(id) + "' is longer than " +
                            std::to_string(kMaxModelIdBytes) + " bytes");
  }
  for (const auto& m : loaded_) {
    if (m->model->info.id == id) return m;
  }
  std::shared_lock lock(mutex_);
  for (const auto& m : installed_) {
    if (m->model->info.id == id) return m;
  }
  return not_found("unknown model '" + truncated_id(id) + "' (this server holds " +
                   std::to_string(loaded_.size() + installed_.size()) +
                   " models; ListModels names them)");
}

std::vector<ResidentModelPtr> ModelRegistry::models() const {
  std::vector<ResidentModelPtr> all = loaded_;
  std::shared_lock lock(mutex_);
  all.insert(all.end(), installed_.begin(), installed_.end());
  return all;
}

int ModelRegistry::size() const {
  std::shared_lock lock(mutex_);
  return static_cast<int>(loaded_.size() + installed_.size());
}

std::int64_t ModelRegistry::weight_bytes() const {
  std::int64_t bytes = 0;
  for (const auto& m : models()) bytes += m->model->info.parameters * 4;
  return bytes;
}

Status ModelRegistry::install(ResidentModelPtr model) {
  const std::string& id = model->model->info.id;
  for (const auto& m : loaded_) {
    if (m->model->info.id == id) {
      return failed_precondition("model id '" + truncated_id(id) +
                                 "' belongs to a model loaded from a file; it is never replaced");
    }
  }
  std::unique_lock lock(mutex_);
  auto it = std::find_if(installed_.begin(), installed_.end(),
                         [&](const ResidentModelPtr& m) { return m->model->info.id == id; });
  if (it != installed_.end()) {
    *it = std::move(model);
  } else {
    installed_.push_back(std::move(model));
    std::sort(installed_.begin(), installed_.end(),
              [](const auto& a, const auto& b) { return a->model->info.id < b->model->info.id; });
  }
  return Status::Ok();
}

void ModelRegistry::uninstall(const std::string& id) {
  std::unique_lock lock(mutex_);
  std::erase_if(installed_, [&](const ResidentModelPtr& m) { return m->model->info.id == id; });
}

}  // namespace stimloop::engine
