// What a client actually got from a call, for the request log and the requests_total counter.
// A call that was cancelled (by the client, its deadline, a broken connection or the server's
// shutdown) before the server's status went out ends, for the client, with CANCELLED or
// DEADLINE_EXCEEDED, whatever the server meant to send: the call's OnDone asks gRPC, and only
// then is the call counted and logged.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "server/engine/job.h"
#include "server/engine/metrics.h"

namespace stimloop::service {

// `sent` unless the call was cancelled first; then CANCELLED, or DEADLINE_EXCEEDED when the
// call's deadline has passed. Call from OnDone.
grpc::Status delivered_status(const grpc::CallbackServerContext& context, const grpc::Status& sent);

// One structured line per finished RPC (logfmt) and one count in requests_total{method, code}.
void record_call(engine::EngineMetrics& metrics, const char* rpc, const std::string& request_id,
                 const grpc::Status& status, std::chrono::steady_clock::time_point start,
                 const std::string& extra);

// A unary call's reactor: finish() sends the status; a cancelled call cancels its engine job (so
// a queued job is dropped rather than run for no one); OnDone records what the client got and
// deletes the reactor.
class UnaryCall : public grpc::ServerUnaryReactor {
 public:
  UnaryCall(const grpc::CallbackServerContext* context, const char* rpc, std::string request_id,
            engine::EngineMetrics* metrics);

  void finish(const grpc::Status& status, std::string extra = "");
  void set_job(const std::shared_ptr<engine::Job>& job);

  void OnCancel() override;
  void OnDone() override;

 private:
  const grpc::CallbackServerContext* context_;
  const char* rpc_;
  std::string request_id_;
  engine::EngineMetrics* metrics_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::mutex mutex_;
  std::weak_ptr<engine::Job> job_;
  grpc::Status sent_;
  std::string extra_;
};

}  // namespace stimloop::service
