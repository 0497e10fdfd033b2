// The models a server holds: every .keras file of every --models directory (plus the built-in
// demo models when asked), loaded once at start-up and uploaded to the backend, where they stay
// for the life of the process. Read-only after load(), so any thread may look models up.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "models/model.h"

namespace stimloop::engine {

struct ResidentModel {
  std::shared_ptr<const Model> model;
  std::unique_ptr<ResidentNetwork> network;
};

class ModelRegistry {
 public:
  // Loads every model of every directory; with no directory (or with `with_demo`) the demo
  // models too. Two files with the same id in different directories are an error.
  static StatusOr<std::unique_ptr<ModelRegistry>> load(const std::vector<std::string>& directories,
                                                       bool with_demo, Backend& backend);

  // One forward pass per model, so the first real request pays no first-touch costs.
  Status warm_up();

  // NOT_FOUND (naming the id) for an id the server does not hold.
  StatusOr<const ResidentModel*> find(const std::string& id) const;
  const std::vector<std::unique_ptr<ResidentModel>>& models() const { return models_; }
  Backend& backend() const { return backend_; }
  // Bytes of float32 weights resident (all models).
  std::int64_t weight_bytes() const;

 private:
  explicit ModelRegistry(Backend& backend) : backend_(backend) {}
  Backend& backend_;
  std::vector<std::unique_ptr<ResidentModel>> models_;
};

}  // namespace stimloop::engine
