// The C++ client of stimloop.v1: a channel (plain, TLS, or mutual TLS), the bearer token on
// every call, and one method per RPC returning stimloop's Status (gRPC codes mapped back in
// server/service/grpc_status). The CLI's remote mode and the rig example use it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/status.h"
#include "stimloop/v1/sessions.grpc.pb.h"
#include "stimloop/v1/stimloop.grpc.pb.h"

namespace stimloop::client {

namespace v1 = ::stimloop::v1;

struct ClientOptions {
  std::string address;   // HOST:PORT
  std::string tls_ca;    // PEM file: use TLS, trusting this CA ("" = plaintext)
  std::string tls_cert;  // PEM files: a client certificate for mutual TLS
  std::string tls_key;
  std::string token_file;       // first non-comment line is the bearer token
  std::string tls_server_name;  // override the name checked in the server's certificate
};

struct CallOptions {
  std::optional<std::chrono::milliseconds> timeout;  // gRPC deadline
  std::string request_id;                            // sent as x-request-id when non-empty
  // Set by synthesize() while the call runs, so another thread may cancel it.
  std::function<void(grpc::ClientContext*)> on_context;
};

class StimloopClient {
 public:
  static StatusOr<std::unique_ptr<StimloopClient>> connect(const ClientOptions& options);

  StatusOr<v1::ListModelsResponse> list_models(const CallOptions& call = {});
  StatusOr<v1::ModelInfo> get_model(const std::string& id, const CallOptions& call = {});
  StatusOr<v1::PredictResponse> predict(const v1::PredictRequest& request,
                                        const CallOptions& call = {});
  StatusOr<v1::InputGradientResponse> input_gradient(const v1::InputGradientRequest& request,
                                                     const CallOptions& call = {});
  // Calls on_event for every event in order; returns the stream's final status.
  Status synthesize(const v1::SynthesizeRequest& request,
                    const std::function<void(const v1::SynthesisEvent&)>& on_event,
                    const CallOptions& call = {});

  // Closed-loop sessions (stimloop.v1.Sessions); every call is safe to retry (sessions.proto).
  StatusOr<v1::SessionInfo> open_session(const v1::OpenSessionRequest& request,
                                         const CallOptions& call = {});
  StatusOr<v1::Block> next_block(const v1::NextBlockRequest& request, const CallOptions& call = {});
  StatusOr<v1::ReportResponsesResponse> report_responses(const v1::ReportResponsesRequest& request,
                                                         const CallOptions& call = {});
  StatusOr<v1::SessionInfo> get_session(const std::string& session_id,
                                        const CallOptions& call = {});
  StatusOr<v1::ListSessionsResponse> list_sessions(const CallOptions& call = {});
  StatusOr<v1::SessionInfo> close_session(const std::string& session_id,
                                          const CallOptions& call = {});
  StatusOr<v1::ExportSessionResponse> export_session(const std::string& session_id,
                                                     const CallOptions& call = {});

  // Polls the standard health service until it reports SERVING or the timeout passes.
  Status wait_until_serving(std::chrono::milliseconds timeout);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  void prepare(grpc::ClientContext& context, const CallOptions& call) const;
  template <typename Response, typename Request, typename Rpc>
  StatusOr<Response> session_call(Rpc rpc, const Request& request, const CallOptions& call);
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Stimloop::Stub> stub_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
  std::string token_;
};

// 8-bit RGB pixels as a RAW_RGB8 image message.
v1::Image raw_image(const std::vector<std::uint8_t>& pixels, int height, int width);

}  // namespace stimloop::client
