#include "server/service/stimloop_service.h"

#include <spdlog/spdlog.h>

#include <cstdio>

#include "common/version.h"
#include "server/engine/predict_job.h"
#include "server/engine/synthesize_job.h"
#include "server/service/call_outcome.h"
#include "server/service/convert.h"
#include "server/service/grpc_status.h"
#include "server/service/synthesize_call.h"

namespace stimloop::service {
namespace {

using Clock = std::chrono::steady_clock;

bool valid_client_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace

Status StimloopService::admit(const grpc::CallbackServerContext& context) const {
  RETURN_IF_ERROR(ctx_.auth.check(context));
  if (registry_.load() == nullptr) {
    return unavailable("models are still loading; wait for the health service to say SERVING");
  }
  return Status::Ok();
}

std::string StimloopService::request_id(const grpc::CallbackServerContext& context) {
  // A client may name its request (x-request-id) so its logs and ours line up.
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("x-request-id"); it != metadata.end()) {
    std::string id(it->second.data(), it->second.size());
    if (valid_client_id(id)) return id;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "r%08x-%06llx", static_cast<unsigned>(id_salt_),
                static_cast<unsigned long long>(next_id_.fetch_add(1)));
  return buf;
}

grpc::ServerUnaryReactor* StimloopService::ListModels(grpc::CallbackServerContext* context,
                                                      const v1::ListModelsRequest*,
                                                      v1::ListModelsResponse* response) {
  auto* call = new UnaryCall(context, "ListModels", request_id(*context), ctx_.metrics);
  grpc::Status status = to_grpc(admit(*context));
  if (status.ok()) {
    for (const auto& m : registry_.load()->models()) {
      fill_model_info(m->model->info, ctx_.backend_name, response->add_models());
    }
    response->set_backend(ctx_.backend_name);
    response->set_server_version(STIMLOOP_VERSION);
  }
  call->finish(status);
  return call;
}

grpc::ServerUnaryReactor* StimloopService::GetModel(grpc::CallbackServerContext* context,
                                                    const v1::GetModelRequest* request,
                                                    v1::ModelInfo* response) {
  auto* call = new UnaryCall(context, "GetModel", request_id(*context), ctx_.metrics);
  Status s = admit(*context);
  if (s.ok()) {
    auto model = registry_.load()->find(request->model_id());
    if (model.ok()) {
      fill_model_info((*model)->model->info, ctx_.backend_name, response);
    } else {
      s = model.status().with_context("model_id");
    }
  }
  call->finish(to_grpc(s), " model=" + request->model_id().substr(0, 128));
  return call;
}

grpc::ServerUnaryReactor* StimloopService::Predict(grpc::CallbackServerContext* context,
                                                   const v1::PredictRequest* request,
                                                   v1::PredictResponse* response) {
  const std::string id = request_id(*context);
  auto* call = new UnaryCall(context, "Predict", id, ctx_.metrics);
  auto finish = [call](const Status& s, const std::string& extra) {
    call->finish(to_grpc(s), extra);
  };
  auto prepare = [&]() -> StatusOr<std::shared_ptr<engine::Job>> {
    RETURN_IF_ERROR(admit(*context));
    const engine::ModelRegistry& registry = *registry_.load();
    if (request->model_ids().empty()) return invalid_argument("model_ids: no model given");
    if (request->model_ids_size() > kMaxPredictModels) {
      return invalid_argument("model_ids: at most " + std::to_string(kMaxPredictModels) +
                              " models per request");
    }
    std::vector<engine::ResidentModelPtr> models;
    for (int i = 0; i < request->model_ids_size(); ++i) {
      auto m = registry.find(request->model_ids(i));
      if (!m.ok()) return m.status().with_context("model_ids[" + std::to_string(i) + "]");
      models.push_back(*m);
    }
    const ModelInfo& first = models.front()->model->info;
    for (const auto& m : models) {
      if (m->model->info.in_h != first.in_h || m->model->info.in_w != first.in_w) {
        return invalid_argument("model_ids: " + m->model->info.id + " and " + first.id +
                                " take different image sizes; send them in separate requests");
      }
    }
    ASSIGN_OR_RETURN(auto raw, decode_images(request->images(), first.in_h, first.in_w,
                                             kMaxPredictImages, "images"));
    ASSIGN_OR_RETURN(auto priority, to_priority(request->priority()));
    ASSIGN_OR_RETURN(auto deadline, request_deadline(*context, request->deadline_ms()));
    const int n = request->images_size();
    return std::shared_ptr<engine::Job>(std::make_shared<engine::PredictJob>(
        id, priority, deadline, models, std::move(raw), n,
        [this, models, response, finish, id, n](StatusOr<engine::PredictResult> result) {
          if (result.ok()) {
            for (std::size_t k = 0; k < models.size(); ++k) {
              const ModelInfo& info = models[k]->model->info;
              auto* r = response->add_results();
              r->set_model_id(info.id);
              r->set_sha256(info.sha256);
              r->set_num_outputs(info.num_outputs);
              r->mutable_responses()->Add(result->responses[k].begin(), result->responses[k].end());
            }
            response->set_backend(ctx_.backend_name);
            response->set_request_id(id);
          }
          finish(result.status(),
                 " images=" + std::to_string(n) + " models=" + std::to_string(models.size()));
        }));
  };
  auto job = prepare();
  if (!job.ok()) {
    finish(job.status(), "");
    return call;
  }
  call->set_job(*job);
  if (Status s = ctx_.engine->submit(*job); !s.ok()) finish(s, "");
  return call;
}

grpc::ServerUnaryReactor* StimloopService::InputGradient(grpc::CallbackServerContext* context,
                                                         const v1::InputGradientRequest* request,
                                                         v1::InputGradientResponse* response) {
  const std::string id = request_id(*context);
  auto* call = new UnaryCall(context, "InputGradient", id, ctx_.metrics);
  auto finish = [call](const Status& s, const std::string& extra) {
    call->finish(to_grpc(s), extra);
  };
  auto prepare = [&]() -> StatusOr<std::shared_ptr<engine::Job>> {
    RETURN_IF_ERROR(admit(*context));
    auto found = registry_.load()->find(request->model_id());
    if (!found.ok()) return found.status().with_context("model_id");
    engine::ResidentModelPtr m = *found;
    const ModelInfo& info = m->model->info;
    std::vector<float> seed(info.num_outputs, 0.0f);
    if (request->output_seed_size() > 0) {
      if (request->output_index() != 0) {
        return invalid_argument("give output_index or output_seed, not both");
      }
      if (request->output_seed_size() != info.num_outputs) {
        return invalid_argument("output_seed holds " + std::to_string(request->output_seed_size()) +
                                " weights; " + info.id + " has " +
                                std::to_string(info.num_outputs) + " outputs");
      }
      for (int k = 0; k < info.num_outputs; ++k) {
        if (!std::isfinite(request->output_seed(k))) {
          return invalid_argument("output_seed[" + std::to_string(k) + "] is NaN or infinite");
        }
        seed[k] = request->output_seed(k);
      }
    } else {
      if (request->output_index() < 0 || request->output_index() >= info.num_outputs) {
        return out_of_range("output_index " + std::to_string(request->output_index()) +
                            " is outside 0.." + std::to_string(info.num_outputs - 1) + " of " +
                            info.id);
      }
      seed[request->output_index()] = 1.0f;
    }
    ASSIGN_OR_RETURN(auto raw, decode_images(request->images(), info.in_h, info.in_w,
                                             kMaxGradientImages, "images"));
    ASSIGN_OR_RETURN(auto priority, to_priority(request->priority()));
    ASSIGN_OR_RETURN(auto deadline, request_deadline(*context, request->deadline_ms()));
    const int n = request->images_size();
    return std::shared_ptr<engine::Job>(std::make_shared<engine::GradientJob>(
        id, priority, deadline, m, std::move(raw), n, std::move(seed),
        [this, m, response, finish, id, n](StatusOr<engine::GradientResult> result) {
          if (result.ok()) {
            response->set_model_id(m->model->info.id);
            response->set_num_outputs(m->model->info.num_outputs);
            response->mutable_responses()->Add(result->responses.begin(), result->responses.end());
            response->mutable_gradients()->Add(result->gradients.begin(), result->gradients.end());
            response->set_backend(ctx_.backend_name);
            response->set_request_id(id);
          }
          finish(result.status(), " images=" + std::to_string(n) + " model=" + m->model->info.id);
        }));
  };
  auto job = prepare();
  if (!job.ok()) {
    finish(job.status(), "");
    return call;
  }
  call->set_job(*job);
  if (Status s = ctx_.engine->submit(*job); !s.ok()) finish(s, "");
  return call;
}

grpc::ServerWriteReactor<v1::SynthesisEvent>* StimloopService::Synthesize(
    grpc::CallbackServerContext* context, const v1::SynthesizeRequest* request) {
  const auto start = Clock::now();
  const std::string id = request_id(*context);
  SynthesizeCallInfo info;
  info.request_id = id;
  info.metrics = ctx_.metrics;
  info.encoding = request->result_encoding() == v1::RAW_RGB8 ? v1::RAW_RGB8 : v1::PNG;
  std::string model_id = request->model_id().substr(0, 128);
  info.context = context;
  info.on_end = [this, id, start, model_id](const grpc::Status& status,
                                            const engine::SynthesisSummary* summary) {
    std::string extra = " model=" + model_id;
    if (summary != nullptr) {
      extra += " steps_done=" + std::to_string(summary->steps_done) +
               " stop_reason=" + synthesis::to_string(summary->stop_reason) +
               " queue_ms=" + std::to_string(summary->queue_ms);
    }
    record_call(*ctx_.metrics, "Synthesize", id, status, start, extra);
  };

  struct Prepared {
    engine::ResidentModelPtr model;
    synthesis::SynthesisRequest request;
    engine::Priority priority = engine::Priority::kInteractive;
    std::optional<Clock::time_point> deadline;
    engine::SynthesizeOptions options;
  };
  auto prepare = [&]() -> StatusOr<Prepared> {
    Prepared p;
    RETURN_IF_ERROR(admit(*context));
    auto found = registry_.load()->find(request->model_id());
    if (!found.ok()) return found.status().with_context("model_id");
    p.model = *found;
    ASSIGN_OR_RETURN(p.request, to_request(request->spec(), *p.model->model));
    ASSIGN_OR_RETURN(p.priority, to_priority(request->priority()));
    ASSIGN_OR_RETURN(p.deadline, request_deadline(*context, request->deadline_ms()));
    p.request.deadline_ms = request->deadline_ms();
    if (request->result_encoding() != v1::IMAGE_ENCODING_UNSPECIFIED &&
        request->result_encoding() != v1::RAW_RGB8 && request->result_encoding() != v1::PNG) {
      return invalid_argument("result_encoding must be RAW_RGB8 or PNG");
    }
    if (request->progress_every() < 0 || request->snapshot_every() < 0) {
      return invalid_argument("progress_every and snapshot_every must be >= 0");
    }
    p.options.progress_every = request->progress_every() > 0 ? request->progress_every() : 10;
    p.options.snapshot_every = request->snapshot_every();
    p.options.results_dir = ctx_.results_dir;
    p.options.step_times = ctx_.step_times;
    // A rig's own batch is never split: nothing it could make way for is more urgent.
    p.options.max_images_per_slice =
        p.priority == engine::Priority::kRig ? 0 : ctx_.max_step_images;
    return p;
  };
  auto prepared = prepare();
  if (prepared.ok()) {
    info.height = prepared->model->model->info.in_h;
    info.width = prepared->model->model->info.in_w;
  }
  auto* call = new SynthesizeCall(std::move(info));  // deletes itself in OnDone
  if (!prepared.ok()) {
    call->reject(to_grpc(prepared.status()));
    return call;
  }
  auto job = std::make_shared<engine::SynthesizeJob>(
      id, prepared->priority, prepared->deadline, prepared->model, registry_.load()->backend(),
      std::move(prepared->request), std::move(prepared->options), call->sink());
  call->set_job(job);
  if (Status s = ctx_.engine->submit(job); !s.ok()) {
    call->reject(to_grpc(s));
  } else {
    call->accept();
  }
  return call;
}

}  // namespace stimloop::service
