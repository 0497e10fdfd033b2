// Predict and input-gradient jobs: one slice each. Queued jobs on the same models run as one
// batch (one forward pass over all their images), then each job gets its own rows back. The
// images arrive decoded and checked (size, byte count) by the service layer.
#pragma once

#include <functional>
#include <vector>

#include "server/engine/job.h"
#include "server/engine/model_registry.h"

namespace stimloop::engine {

struct PredictResult {
  // Per model, in the request's order: images x num_outputs.
  std::vector<std::vector<float>> responses;
};

class PredictJob : public Job {
 public:
  using Done = std::function<void(StatusOr<PredictResult>)>;
  PredictJob(std::string request_id, Priority priority, std::optional<Clock::time_point> deadline,
             std::vector<ResidentModelPtr> models, std::vector<std::uint8_t> raw, int n,
             Done done);

  std::string batch_key() const override { return key_; }
  int batch_images() const override { return n_; }
  SliceResult run(std::vector<std::shared_ptr<Job>>& companions) override;
  void fail(const Status& status) override { done_(status); }

 private:
  std::vector<ResidentModelPtr> models_;
  std::vector<std::uint8_t> raw_;  // n x h x w x 3
  int n_;
  Done done_;
  std::string key_;
};

struct GradientResult {
  std::vector<float> responses;  // images x num_outputs
  std::vector<float> gradients;  // images x h x w x 3
};

class GradientJob : public Job {
 public:
  using Done = std::function<void(StatusOr<GradientResult>)>;
  // `seed`: num_outputs weights applied to every image's outputs.
  GradientJob(std::string request_id, Priority priority, std::optional<Clock::time_point> deadline,
              ResidentModelPtr model, std::vector<std::uint8_t> raw, int n,
              std::vector<float> seed, Done done);

  std::string batch_key() const override { return key_; }
  int batch_images() const override { return n_; }
  SliceResult run(std::vector<std::shared_ptr<Job>>& companions) override;
  void fail(const Status& status) override { done_(status); }

 private:
  ResidentModelPtr model_;
  std::vector<std::uint8_t> raw_;
  int n_;
  std::vector<float> seed_;
  Done done_;
  std::string key_;
};

// The status a job that never ran should end with, or OK when it may run: CANCELLED when its
// client went away, DEADLINE_EXCEEDED when its deadline passed while it waited.
Status admission_check(const Job& job);

}  // namespace stimloop::engine
