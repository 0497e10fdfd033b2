#include "server/engine/model_registry.h"

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
    ASSIGN_OR_RETURN(auto models, repository->load_all());
    for (auto& model : models) {
      if (!seen.insert(model->info.id).second) {
        return invalid_argument("model id '" + model->info.id + "' is in two --models directories" +
                                " (" + model->info.source + ")");
      }
      auto resident = std::make_unique<ResidentModel>();
      ASSIGN_OR_RETURN(resident->network, backend.upload(model->network));
      resident->model = std::move(model);
      registry->models_.push_back(std::move(resident));
    }
  }
  return registry;
}

Status ModelRegistry::warm_up() {
  for (const auto& m : models_) {
    const ModelInfo& info = m->model->info;
    std::vector<float> image(static_cast<std::size_t>(info.in_h) * info.in_w * info.in_c, 0.0f);
    std::vector<float> outputs(info.num_outputs);
    RETURN_IF_ERROR(m->network->forward(image, 1, outputs).with_context(info.id));
  }
  return Status::Ok();
}

StatusOr<const ResidentModel*> ModelRegistry::find(const std::string& id) const {
  for (const auto& m : models_) {
    if (m->model->info.id == id) return m.get();
  }
  return not_found("unknown model '" + id + "' (this server holds " +
                   std::to_string(models_.size()) + " models; ListModels names them)");
}

std::int64_t ModelRegistry::weight_bytes() const {
  std::int64_t bytes = 0;
  for (const auto& m : models_) bytes += m->model->info.parameters * 4;
  return bytes;
}

}  // namespace stimloop::engine
