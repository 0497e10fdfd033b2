// The models a server holds: every .keras file of every --models directory (plus the built-in
// demo models when asked), loaded once at start-up and uploaded to the backend, where they stay
// for the life of the process; and models made while serving (a session's calibrated channels),
// installed and replaced live. Jobs hold a shared pointer to the model they run, so replacing a
// model never pulls it from under a running job. Any thread may look models up.
#pragma once

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/truncate.h"
#include "kernels/backend.h"
#include "models/model.h"

namespace stimloop::engine {

inline constexpr std::size_t kMaxModelIdBytes = 256;

struct ResidentModel {
  std::shared_ptr<const Model> model;
  std::unique_ptr<ResidentNetwork> network;
};
using ResidentModelPtr = std::shared_ptr<const ResidentModel>;

class ModelRegistry {
 public:
  // Loads every model of every directory; with no directory (or with `with_demo`) the demo
  // models too. Two files with the same id in different directories are an error.
  static StatusOr<std::unique_ptr<ModelRegistry>> load(const std::vector<std::string>& directories,
                                                       bool with_demo, Backend& backend);

  // One forward pass per model, so the first real request pays no first-touch costs.
  Status warm_up();

  // NOT_FOUND (naming the id, truncated) for an id the server does not hold; INVALID_ARGUMENT
  // for one longer than kMaxModelIdBytes.
  StatusOr<ResidentModelPtr> find(const std::string& id) const;
  // Loaded models in their natural order, then installed ones by id.
  std::vector<ResidentModelPtr> models() const;
  int size() const;
  Backend& backend() const { return backend_; }
  // Bytes of float32 weights resident (all models).
  std::int64_t weight_bytes() const;

  // Adds an already uploaded model, or replaces the installed one with its id, atomically: a
  // lookup sees the old model or the new one, never neither. FAILED_PRECONDITION when the id is
  // that of a model loaded from a directory (those are never replaced).
  Status install(ResidentModelPtr model);
  // Removes an installed model (no-op when absent); running jobs keep theirs until they end.
  void uninstall(const std::string& id);

 private:
  explicit ModelRegistry(Backend& backend) : backend_(backend) {}
  Backend& backend_;
  std::vector<ResidentModelPtr> loaded_;  // fixed after load()
  mutable std::shared_mutex mutex_;       // guards installed_
  std::vector<ResidentModelPtr> installed_;
};

}  // namespace stimloop::engine
