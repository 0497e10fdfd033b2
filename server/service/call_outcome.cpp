#include "server/service/call_outcome.h"

#include <spdlog/spdlog.h>

#include "server/service/grpc_status.h"

namespace stimloop::service {

grpc::Status delivered_status(const grpc::CallbackServerContext& context,
                              const grpc::Status& sent) {
  if (!context.IsCancelled()) return sent;
  if (std::chrono::system_clock::now() >= context.deadline()) {
    return {grpc::StatusCode::DEADLINE_EXCEEDED,
            "the call's deadline passed before the answer was delivered"};
  }
  return {grpc::StatusCode::CANCELLED, "the call was cancelled before the answer was delivered"};
}

void record_call(engine::EngineMetrics& metrics, const char* rpc, const std::string& request_id,
                 const grpc::Status& status, std::chrono::steady_clock::time_point start,
                 const std::string& extra) {
  const char* code = status_code_name(from_grpc(status).code());
  metrics.count_request(rpc, code);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const std::string id = request_id.empty() ? "" : " request_id=" + request_id;
  if (status.ok()) {
    spdlog::info("rpc={}{} code={} ms={:.2f}{}", rpc, id, code, ms, extra);
  } else {
    spdlog::warn("rpc={}{} code={} ms={:.2f}{} error=\"{}\"", rpc, id, code, ms, extra,
                 status.error_message());
  }
}

UnaryCall::UnaryCall(const grpc::CallbackServerContext* context, const char* rpc,
                     std::string request_id, engine::EngineMetrics* metrics)
    : context_(context), rpc_(rpc), request_id_(std::move(request_id)), metrics_(metrics) {}

void UnaryCall::finish(const grpc::Status& status, std::string extra) {
  {
    std::lock_guard lock(mutex_);
    sent_ = status;
    extra_ = std::move(extra);
  }
  Finish(status);
}

void UnaryCall::set_job(const std::shared_ptr<engine::Job>& job) {
  std::lock_guard lock(mutex_);
  job_ = job;
}

void UnaryCall::OnCancel() {
  std::shared_ptr<engine::Job> job;
  {
    std::lock_guard lock(mutex_);
    job = job_.lock();
  }
  if (job) job->cancel();
}

void UnaryCall::OnDone() {
  grpc::Status sent;
  std::string extra;
  {
    std::lock_guard lock(mutex_);
    sent = sent_;
    extra = extra_;
  }
  record_call(*metrics_, rpc_, request_id_, delivered_status(*context_, sent), start_, extra);
  delete this;
}

}  // namespace stimloop::service
