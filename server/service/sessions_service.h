// The stimloop.v1.Sessions service on gRPC's callback API. Session calls block on the store's
// commits, engine jobs and fits, so each RPC checks authentication and hands its work to a small
// pool of session threads, which finish the call; gRPC's own threads never wait.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "server/engine/metrics.h"
#include "server/service/auth.h"
#include "server/sessions/session_manager.h"
#include "stimloop/v1/sessions.grpc.pb.h"

namespace stimloop::service {

class SessionsService final : public stimloop::v1::Sessions::CallbackService {
 public:
  SessionsService(TokenAuthenticator auth, engine::EngineMetrics* metrics, int threads = 4);
  ~SessionsService() override;  // finishes queued calls with UNAVAILABLE, joins the threads

  // Until set, every call answers UNAVAILABLE (the server is still loading or resuming).
  void set_manager(sessions::SessionManager* manager, const engine::ModelRegistry* registry) {
    registry_ = registry;
    manager_.store(manager);
  }

  grpc::ServerUnaryReactor* OpenSession(grpc::CallbackServerContext* context,
                                        const v1::OpenSessionRequest* request,
                                        v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* NextBlock(grpc::CallbackServerContext* context,
                                      const v1::NextBlockRequest* request,
                                      v1::Block* response) override;
  grpc::ServerUnaryReactor* ReportResponses(grpc::CallbackServerContext* context,
                                            const v1::ReportResponsesRequest* request,
                                            v1::ReportResponsesResponse* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const v1::GetSessionRequest* request,
                                       v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const v1::CloseSessionRequest* request,
                                         v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* ExportSession(grpc::CallbackServerContext* context,
                                          const v1::ExportSessionRequest* request,
                                          v1::ExportSessionResponse* response) override;

 private:
  // Admits the call, then runs `work` on a session thread and finishes the call with its status.
  grpc::ServerUnaryReactor* dispatch(const char* rpc, grpc::CallbackServerContext* context,
                                     std::string detail,
                                     std::function<Status(sessions::SessionManager&)> work);
  void worker();
  StatusOr<synthesis::SynthesisRequest> synthesis_spec(sessions::SessionManager& manager,
                                                       const std::string& session_id,
                                                       const v1::SynthesisSpec& spec) const;

  TokenAuthenticator auth_;
  engine::EngineMetrics* metrics_;
  std::atomic<sessions::SessionManager*> manager_{nullptr};
  const engine::ModelRegistry* registry_ = nullptr;  // set before manager_ (release order)
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void(bool run)>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace stimloop::service
