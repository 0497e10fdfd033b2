#include "client/lib/stimloop_client.h"

#include <fstream>
#include <sstream>
#include <thread>

#include "common/text_file.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/service/grpc_status.h"

namespace stimloop::client {
namespace {

StatusOr<std::string> read_token(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, read_text_file(path, "--token-file"));
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    return line.substr(first, last - first + 1);
  }
  return invalid_argument("--token-file: no token in " + path);
}

}  // namespace

v1::Image raw_image(const std::vector<std::uint8_t>& pixels, int height, int width) {
  v1::Image image;
  image.set_encoding(v1::RAW_RGB8);
  image.set_height(height);
  image.set_width(width);
  image.set_data(std::string(pixels.begin(), pixels.end()));
  return image;
}

StatusOr<std::unique_ptr<StimloopClient>> StimloopClient::connect(const ClientOptions& options) {
  if (options.address.empty()) return invalid_argument("--server: no address given");
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return invalid_argument("--tls-cert and --tls-key go together");
  }
  if (!options.tls_cert.empty() && options.tls_ca.empty()) {
    return invalid_argument("--tls-cert (mutual TLS) needs --tls-ca");
  }
  auto client = std::unique_ptr<StimloopClient>(new StimloopClient());
  if (!options.token_file.empty()) {
    ASSIGN_OR_RETURN(client->token_, read_token(options.token_file));
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ASSIGN_OR_RETURN(ssl.pem_root_certs, read_text_file(options.tls_ca, "--tls-ca"));
    if (!options.tls_cert.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, read_text_file(options.tls_cert, "--tls-cert"));
      ASSIGN_OR_RETURN(ssl.pem_private_key, read_text_file(options.tls_key, "--tls-key"));
    }
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  client->channel_ = grpc::CreateCustomChannel(options.address, credentials, args);
  client->stub_ = v1::Stimloop::NewStub(client->channel_);
  client->sessions_ = v1::Sessions::NewStub(client->channel_);
  return client;
}

void StimloopClient::prepare(grpc::ClientContext& context, const CallOptions& call) const {
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
  if (!call.request_id.empty()) context.AddMetadata("x-request-id", call.request_id);
  if (call.timeout) context.set_deadline(std::chrono::system_clock::now() + *call.timeout);
}

StatusOr<v1::ListModelsResponse> StimloopClient::list_models(const CallOptions& call) {
  grpc::ClientContext context;
  prepare(context, call);
  v1::ListModelsResponse response;
  RETURN_IF_ERROR(service::from_grpc(stub_->ListModels(&context, {}, &response)));
  return response;
}

StatusOr<v1::ModelInfo> StimloopClient::get_model(const std::string& id, const CallOptions& call) {
  grpc::ClientContext context;
  prepare(context, call);
  v1::GetModelRequest request;
  request.set_model_id(id);
  v1::ModelInfo response;
  RETURN_IF_ERROR(service::from_grpc(stub_->GetModel(&context, request, &response)));
  return response;
}

StatusOr<v1::PredictResponse> StimloopClient::predict(const v1::PredictRequest& request,
                                                      const CallOptions& call) {
  grpc::ClientContext context;
  prepare(context, call);
  v1::PredictResponse response;
  RETURN_IF_ERROR(service::from_grpc(stub_->Predict(&context, request, &response)));
  return response;
}

StatusOr<v1::InputGradientResponse> StimloopClient::input_gradient(
    const v1::InputGradientRequest& request, const CallOptions& call) {
  grpc::ClientContext context;
  prepare(context, call);
  v1::InputGradientResponse response;
  RETURN_IF_ERROR(service::from_grpc(stub_->InputGradient(&context, request, &response)));
  return response;
}

Status StimloopClient::synthesize(const v1::SynthesizeRequest& request,
                                  const std::function<void(const v1::SynthesisEvent&)>& on_event,
                                  const CallOptions& call) {
  grpc::ClientContext context;
  prepare(context, call);
  if (call.on_context) call.on_context(&context);
  auto reader = stub_->Synthesize(&context, request);
  v1::SynthesisEvent event;
  while (reader->Read(&event)) on_event(event);
  Status status = service::from_grpc(reader->Finish());
  if (call.on_context) call.on_context(nullptr);
  return status;
}

Status StimloopClient::wait_until_serving(std::chrono::milliseconds timeout) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  const auto end = std::chrono::steady_clock::now() + timeout;
  Status last = unavailable("no answer from the server's health service");
  while (std::chrono::steady_clock::now() < end) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status s = health->Check(&context, request, &response);
    if (s.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return Status::Ok();
    }
    last = s.ok() ? unavailable("server is not SERVING yet") : service::from_grpc(s);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return last.with_context("waiting for SERVING");
}

}  // namespace stimloop::client

namespace stimloop::client {

template <typename Response, typename Request, typename Rpc>
StatusOr<Response> StimloopClient::session_call(Rpc rpc, const Request& request,
                                                const CallOptions& call) {
  grpc::ClientContext context;
  prepare(context, call);
  Response response;
  RETURN_IF_ERROR(service::from_grpc((sessions_.get()->*rpc)(&context, request, &response)));
  return response;
}

StatusOr<v1::SessionInfo> StimloopClient::open_session(const v1::OpenSessionRequest& request,
                                                       const CallOptions& call) {
  return session_call<v1::SessionInfo>(&v1::Sessions::Stub::OpenSession, request, call);
}

StatusOr<v1::Block> StimloopClient::next_block(const v1::NextBlockRequest& request,
                                               const CallOptions& call) {
  return session_call<v1::Block>(&v1::Sessions::Stub::NextBlock, request, call);
}

StatusOr<v1::ReportResponsesResponse> StimloopClient::report_responses(
    const v1::ReportResponsesRequest& request, const CallOptions& call) {
  return session_call<v1::ReportResponsesResponse>(&v1::Sessions::Stub::ReportResponses, request,
                                                   call);
}

StatusOr<v1::SessionInfo> StimloopClient::get_session(const std::string& session_id,
                                                      const CallOptions& call) {
  v1::GetSessionRequest request;
  request.set_session_id(session_id);
  return session_call<v1::SessionInfo>(&v1::Sessions::Stub::GetSession, request, call);
}

StatusOr<v1::ListSessionsResponse> StimloopClient::list_sessions(const CallOptions& call) {
  return session_call<v1::ListSessionsResponse>(&v1::Sessions::Stub::ListSessions,
                                                v1::ListSessionsRequest{}, call);
}

StatusOr<v1::SessionInfo> StimloopClient::close_session(const std::string& session_id,
                                                        const CallOptions& call) {
  v1::CloseSessionRequest request;
  request.set_session_id(session_id);
  return session_call<v1::SessionInfo>(&v1::Sessions::Stub::CloseSession, request, call);
}

StatusOr<v1::ExportSessionResponse> StimloopClient::export_session(const std::string& session_id,
                                                                   const CallOptions& call) {
  v1::ExportSessionRequest request;
  request.set_session_id(session_id);
  return session_call<v1::ExportSessionResponse>(&v1::Sessions::Stub::ExportSession, request, call);
}

}  // namespace stimloop::client
