#include "server/service/sessions_service.h"

#include "server/service/call_outcome.h"
#include "server/service/convert.h"
#include "server/service/grpc_status.h"
#include "server/service/session_convert.h"

namespace stimloop::service {
namespace {

// Calls queued for the session threads beyond this are refused: a flood of session calls must
// not grow memory without bound.
constexpr std::size_t kMaxQueuedCalls = 256;

}  // namespace

StatusOr<synthesis::SynthesisRequest> SessionsService::synthesis_spec(
    sessions::SessionManager& manager, const std::string& session_id,
    const v1::SynthesisSpec& spec) const {
  // Checked against the base model, whose input the calibrated channels share; the server sets
  // the output index (a channel's model has one output), seed and count itself.
  ASSIGN_OR_RETURN(auto status, manager.get(session_id));
  ASSIGN_OR_RETURN(auto base, registry_->find(status.config.base_model));
  v1::SynthesisSpec checked = spec;
  checked.set_output_index(0);
  checked.set_count(1);
  auto request = to_request(checked, *base->model);
  if (!request.ok()) return request.status().with_context("strategy.synthesis");
  return request;
}

SessionsService::SessionsService(TokenAuthenticator auth, engine::EngineMetrics* metrics,
                                 int threads)
    : auth_(std::move(auth)), metrics_(metrics) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
}

SessionsService::~SessionsService() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void SessionsService::worker() {
  for (;;) {
    std::function<void(bool)> call;
    bool stopping = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      call = std::move(queue_.front());
      queue_.pop_front();
      stopping = stopping_;
    }
    call(!stopping);
  }
}

grpc::ServerUnaryReactor* SessionsService::dispatch(
    const char* rpc, grpc::CallbackServerContext* context, std::string detail,
    std::function<Status(sessions::SessionManager&)> work) {
  auto* reactor = new UnaryCall(context, rpc, "", metrics_);
  auto finish = [reactor, detail](const Status& s) { reactor->finish(to_grpc(s), detail); };
  Status admitted = auth_.check(*context);
  sessions::SessionManager* manager = manager_.load();
  if (admitted.ok() && manager == nullptr) {
    admitted =
        unavailable("sessions are still loading; wait for the health service to say SERVING");
  }
  if (!admitted.ok()) {
    finish(admitted);
    return reactor;
  }
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= kMaxQueuedCalls) {
      finish(stopping_ ? unavailable("the server is shutting down")
                       : resource_exhausted("too many session calls queued (" +
                                            std::to_string(kMaxQueuedCalls) + ")"));
      return reactor;
    }
    queue_.push_back([manager, work = std::move(work), finish](bool run) {
      finish(run ? work(*manager) : unavailable("the server is shutting down"));
    });
  }
  wake_.notify_one();
  return reactor;
}

grpc::ServerUnaryReactor* SessionsService::OpenSession(grpc::CallbackServerContext* context,
                                                       const v1::OpenSessionRequest* request,
                                                       v1::SessionInfo* response) {
  return dispatch("OpenSession", context, " session=" + sessions::clip(request->session_id()),
                  [request, response](sessions::SessionManager& m) -> Status {
                    ASSIGN_OR_RETURN(auto config, to_session_config(*request));
                    ASSIGN_OR_RETURN(auto status, m.open(std::move(config)));
                    fill_session_info(status, response);
                    return Status::Ok();
                  });
}

grpc::ServerUnaryReactor* SessionsService::NextBlock(grpc::CallbackServerContext* context,
                                                     const v1::NextBlockRequest* request,
                                                     v1::Block* response) {
  return dispatch("NextBlock", context,
                  " session=" + sessions::clip(request->session_id()) +
                      " count=" + std::to_string(request->count()),
                  [this, request, response, context](sessions::SessionManager& m) -> Status {
                    ASSIGN_OR_RETURN(auto block_request, to_block_request(*request, *context));
                    if (request->strategy().has_synthesis()) {
                      ASSIGN_OR_RETURN(block_request.synthesis,
                                       synthesis_spec(m, request->session_id(),
                                                      request->strategy().synthesis()));
                    }
                    ASSIGN_OR_RETURN(auto block, m.next_block(block_request));
                    auto decoded_size = [&]() -> std::pair<int, int> {
                      if (block.stimuli.empty()) return {0, 0};
                      auto img = ::stimloop::decode_image(block.stimuli.front().png);
                      return img.ok() ? std::pair{img->height, img->width} : std::pair{0, 0};
                    }();
                    fill_block(block, request->session_id(), request->encoding(),
                               decoded_size.first, decoded_size.second, response);
                    return Status::Ok();
                  });
}

grpc::ServerUnaryReactor* SessionsService::ReportResponses(
    grpc::CallbackServerContext* context, const v1::ReportResponsesRequest* request,
    v1::ReportResponsesResponse* response) {
  return dispatch("ReportResponses", context,
                  " session=" + sessions::clip(request->session_id()) +
                      " trials=" + std::to_string(request->trials_size()),
                  [request, response](sessions::SessionManager& m) -> Status {
                    ASSIGN_OR_RETURN(auto trials, to_trials(*request));
                    ASSIGN_OR_RETURN(auto result, m.report(request->session_id(), std::move(trials),
                                                           engine::Priority::kRig));
                    response->set_stored(result.outcome.stored);
                    response->set_duplicates(result.outcome.duplicates);
                    response->set_prepared_invalidated(result.prepared_invalidated);
                    response->set_total_trials(result.total_trials);
                    fill_calibration(result.calibration, response->mutable_calibration());
                    return Status::Ok();
                  });
}

grpc::ServerUnaryReactor* SessionsService::GetSession(grpc::CallbackServerContext* context,
                                                      const v1::GetSessionRequest* request,
                                                      v1::SessionInfo* response) {
  return dispatch("GetSession", context, " session=" + sessions::clip(request->session_id()),
                  [request, response](sessions::SessionManager& m) -> Status {
                    ASSIGN_OR_RETURN(auto status, m.get(request->session_id()));
                    fill_session_info(status, response);
                    return Status::Ok();
                  });
}

grpc::ServerUnaryReactor* SessionsService::ListSessions(grpc::CallbackServerContext* context,
                                                        const v1::ListSessionsRequest*,
                                                        v1::ListSessionsResponse* response) {
  return dispatch("ListSessions", context, "", [response](sessions::SessionManager& m) -> Status {
    for (const auto& s : m.list()) fill_session_info(s, response->add_sessions());
    return Status::Ok();
  });
}

grpc::ServerUnaryReactor* SessionsService::CloseSession(grpc::CallbackServerContext* context,
                                                        const v1::CloseSessionRequest* request,
                                                        v1::SessionInfo* response) {
  return dispatch("CloseSession", context, " session=" + sessions::clip(request->session_id()),
                  [request, response](sessions::SessionManager& m) -> Status {
                    ASSIGN_OR_RETURN(auto status, m.close(request->session_id()));
                    fill_session_info(status, response);
                    return Status::Ok();
                  });
}

grpc::ServerUnaryReactor* SessionsService::ExportSession(grpc::CallbackServerContext* context,
                                                         const v1::ExportSessionRequest* request,
                                                         v1::ExportSessionResponse* response) {
  return dispatch("ExportSession", context, " session=" + sessions::clip(request->session_id()),
                  [request, response](sessions::SessionManager& m) -> Status {
                    ASSIGN_OR_RETURN(auto summary, m.export_session(request->session_id()));
                    response->set_directory(summary.directory);
                    for (const auto& f : summary.files) response->add_files(f);
                    return Status::Ok();
                  });
}

}  // namespace stimloop::service
