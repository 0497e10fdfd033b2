// The stimloop.v1.Stimloop service on gRPC's callback API. Each RPC authenticates, checks every
// field (convert.h), hands the work to the engine and returns; the engine's thread completes the
// call. No RPC handler ever runs a model itself.
#pragma once

#include <atomic>
#include <memory>
#include <random>
#include <string>

#include "server/engine/engine.h"
#include "server/engine/model_registry.h"
#include "server/engine/synthesize_job.h"
#include "server/service/auth.h"
#include "stimloop/v1/stimloop.grpc.pb.h"

namespace stimloop::service {

struct ServiceContext {
  engine::Engine* engine = nullptr;
  engine::EngineMetrics* metrics = nullptr;
  TokenAuthenticator auth;
  std::string results_dir;
  std::string backend_name;
  int max_step_images = 0;  // see ServerOptions::max_step_images (resolved)
  std::shared_ptr<engine::StepTimeBook> step_times = std::make_shared<engine::StepTimeBook>();
};

class StimloopService final : public stimloop::v1::Stimloop::CallbackService {
 public:
  explicit StimloopService(ServiceContext context) : ctx_(std::move(context)) {}

  // Until set (models loaded and warmed up), every RPC answers UNAVAILABLE.
  void set_registry(const engine::ModelRegistry* registry) { registry_.store(registry); }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const stimloop::v1::ListModelsRequest* request,
                                       stimloop::v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const stimloop::v1::GetModelRequest* request,
                                     stimloop::v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Predict(grpc::CallbackServerContext* context,
                                    const stimloop::v1::PredictRequest* request,
                                    stimloop::v1::PredictResponse* response) override;
  grpc::ServerUnaryReactor* InputGradient(grpc::CallbackServerContext* context,
                                          const stimloop::v1::InputGradientRequest* request,
                                          stimloop::v1::InputGradientResponse* response) override;
  grpc::ServerWriteReactor<stimloop::v1::SynthesisEvent>* Synthesize(
      grpc::CallbackServerContext* context,
      const stimloop::v1::SynthesizeRequest* request) override;

 private:
  // Authentication and readiness; OK when the call may proceed.
  Status admit(const grpc::CallbackServerContext& context) const;
  std::string request_id(const grpc::CallbackServerContext& context);

  ServiceContext ctx_;
  std::atomic<const engine::ModelRegistry*> registry_{nullptr};
  std::atomic<std::uint64_t> next_id_{0};
  // Chosen once, before any RPC thread exists: request_id() only reads it.
  const std::uint32_t id_salt_ = std::random_device{}() | 1;
};

}  // namespace stimloop::service
