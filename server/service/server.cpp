#include "server/service/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <omp.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "common/text_file.h"
#include "server/engine/engine.h"
#include "server/engine/model_registry.h"
#include "server/service/convert.h"
#include "server/service/metrics_endpoint.h"
#include "server/service/sessions_service.h"
#include "server/service/stimloop_service.h"

namespace stimloop::service {

struct StimloopServer::State {
  ServerOptions options;
  std::unique_ptr<Backend> backend;
  engine::EngineMetrics metrics;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<engine::ModelRegistry> registry;
  std::unique_ptr<StimloopService> service;
  // Declared before the sessions service, which must stop its threads before the manager goes.
  std::unique_ptr<sessions::SessionManager> sessions;
  std::unique_ptr<SessionsService> sessions_service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint;
  int port = 0;
  std::mutex mutex;
  std::condition_variable stopped_cv;
  bool stopped = false;  // shutdown() has begun
  bool down = false;     // shutdown() has ended
  std::atomic<bool> serving{false};

  std::string render() const {
    engine::EngineMetrics::Gauges g;
    g.queue_depth = engine->queue_depths();
    g.backend = backend->name();
    g.serving = serving.load();
    if (g.serving) {
      g.models_loaded = registry->size();
      const std::int64_t used = backend->memory_in_use();
      g.device_memory_bytes = used >= 0 ? used : registry->weight_bytes();
    }
    return metrics.render(g);
  }
};

Status check_options(const ServerOptions& o) {
  ASSIGN_OR_RETURN(auto host_port, split_host_port(o.listen, "--listen"));
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return invalid_argument("--tls-cert and --tls-key go together");
  }
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) {
    return invalid_argument("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key");
  }
  const bool secure = !o.tls_cert.empty() && !o.auth_token_file.empty();
  if (!is_loopback_host(host_port.first) && !secure && !o.insecure) {
    return failed_precondition(
        "refusing to listen on " + o.listen +
        " without TLS and a token: give --tls-cert, --tls-key and --auth-token-file, or "
        "--insecure to accept the risk (anyone who can reach the port can use the server)");
  }
  if (!o.metrics_listen.empty()) {
    // /metrics has neither TLS nor tokens: off loopback it is exposed to anyone.
    ASSIGN_OR_RETURN(auto metrics_host, split_host_port(o.metrics_listen, "--metrics-listen"));
    if (!is_loopback_host(metrics_host.first) && !o.insecure) {
      return failed_precondition("refusing to serve /metrics on " + o.metrics_listen +
                                 " (no TLS, no token): use a loopback address, or --insecure to "
                                 "accept the risk");
    }
  }
  if (o.handshake_timeout_ms < 100 || o.handshake_timeout_ms > 600000) {
    return invalid_argument("the handshake timeout must be in 100..600000 ms");
  }
  if (o.max_queue < 1 || o.max_queue > 100000) {
    return invalid_argument("--max-queue must be in 1..100000");
  }
  if (o.max_batch_images < 1 || o.max_batch_images > kMaxBatch) {
    return invalid_argument("--max-batch-images must be in 1.." + std::to_string(kMaxBatch));
  }
  if (o.max_step_images < -1 || o.max_step_images > 1024) {
    return invalid_argument("--max-step-images must be -1 (auto), 0 (whole batches) or 1..1024");
  }
  if (o.threads < 0 || o.threads > 1024) return invalid_argument("--threads must be in 0..1024");
  return Status::Ok();
}

namespace {

// Connections that hold resources without doing anything: a socket that never completes the
// HTTP/2 (or TLS) handshake is closed after the handshake timeout (gRPC's default: 120 s),
// an established one with no call for an hour is closed, and a dead peer is found by keepalive
// pings. The memory gRPC may take for connections and calls is bounded. (Debian's gRPC 1.51 has
// no cap on the number of connections; GRPC_ARG_MAX_ALLOWED_INCOMING_CONNECTIONS came later.)
void apply_connection_limits(const ServerOptions& o, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, o.handshake_timeout_ms);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 60 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  grpc::ResourceQuota quota("stimloop-server");  // the builder keeps its own reference
  quota.Resize(kGrpcMemoryBytes);
  builder.SetResourceQuota(quota);
}

}  // namespace

StimloopServer::StimloopServer() : state_(std::make_unique<State>()) {}

StimloopServer::~StimloopServer() { shutdown(); }

StatusOr<std::unique_ptr<StimloopServer>> StimloopServer::start(const ServerOptions& options) {
  RETURN_IF_ERROR(check_options(options));
  auto server = std::unique_ptr<StimloopServer>(new StimloopServer());
  State& s = *server->state_;
  s.options = options;
  if (options.threads > 0) omp_set_num_threads(options.threads);
  if (!options.results_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.results_dir, ec);
    if (ec) return not_found("--results-dir: cannot create " + options.results_dir);
  }
  ASSIGN_OR_RETURN(s.backend, make_backend(options.backend));
  if (options.backend == "auto" && s.backend->name() == "cpu") {
    spdlog::info("backend=cpu reason=\"no usable GPU\"");
  }

  ServiceContext context;
  ASSIGN_OR_RETURN(context.auth, TokenAuthenticator::from_file(options.auth_token_file));
  s.engine = std::make_unique<engine::Engine>(
      engine::EngineOptions{options.max_queue, options.max_batch_images}, s.metrics);
  context.engine = s.engine.get();
  context.metrics = &s.metrics;
  context.results_dir = options.results_dir;
  context.backend_name = s.backend->name();
  context.max_step_images = options.max_step_images >= 0 ? options.max_step_images
                            : s.backend->name() == "cpu" ? 1
                                                         : 0;
  s.sessions_service = std::make_unique<SessionsService>(context.auth, &s.metrics);
  s.service = std::make_unique<StimloopService>(std::move(context));
  std::vector<sessions::PoolFlag> pools;
  for (const auto& flag : options.pools) {
    ASSIGN_OR_RETURN(auto pool, sessions::parse_pool_flag(flag));
    pools.push_back(pool);
  }

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl(
        options.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                      : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ASSIGN_OR_RETURN(std::string cert, read_text_file(options.tls_cert, "--tls-cert"));
    ASSIGN_OR_RETURN(std::string key, read_text_file(options.tls_key, "--tls-key"));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    if (!options.tls_client_ca.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs,
                       read_text_file(options.tls_client_ca, "--tls-client-ca"));
    }
    credentials = grpc::SslServerCredentials(ssl);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &s.port);
  builder.RegisterService(s.service.get());
  builder.RegisterService(s.sessions_service.get());
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.SetMaxSendMessageSize(256 << 20);
  apply_connection_limits(options, builder);
  s.server = builder.BuildAndStart();
  if (!s.server || s.port == 0) {
    return unavailable("cannot listen on " + options.listen +
                       " (address in use, or bad TLS certificate/key)");
  }
  auto* health = s.server->GetHealthCheckService();
  // The whole server ("") and the service by name both answer NOT_SERVING until warmed up.
  health->SetServingStatus(v1::Stimloop::service_full_name(), false);
  health->SetServingStatus(false);
  spdlog::info("event=listening address={} port={} tls={} mutual_tls={} tokens={} backend={}",
               options.listen, s.port, !options.tls_cert.empty(), !options.tls_client_ca.empty(),
               !options.auth_token_file.empty(), s.backend->name());

  if (!options.metrics_listen.empty()) {
    State* state = &s;
    ASSIGN_OR_RETURN(s.metrics_endpoint, MetricsEndpoint::start(options.metrics_listen, [state] {
                       return state->render();
                     }));
    spdlog::info("event=metrics address={} port={}", options.metrics_listen,
                 s.metrics_endpoint->port());
  }

  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(s.registry,
                   engine::ModelRegistry::load(options.model_dirs, options.with_demo, *s.backend));
  RETURN_IF_ERROR(s.registry->warm_up());
  ASSIGN_OR_RETURN(s.sessions, sessions::SessionManager::create(
                                   sessions::SessionManagerOptions{options.data_dir, pools},
                                   *s.registry, *s.engine));
  // Open sessions come back before SERVING, so a rig that reconnects finds its calibrated
  // channels where it left them.
  s.sessions->resume();
  s.service->set_registry(s.registry.get());
  s.sessions_service->set_manager(s.sessions.get(), s.registry.get());
  s.serving = true;
  health->SetServingStatus(true);
  spdlog::info(
      "event=serving models={} load_ms={:.0f}", s.registry->size(),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return server;
}

int StimloopServer::port() const { return state_->port; }
int StimloopServer::metrics_port() const {
  return state_->metrics_endpoint ? state_->metrics_endpoint->port() : 0;
}
std::string StimloopServer::backend_name() const { return state_->backend->name(); }
std::string StimloopServer::render_metrics() const { return state_->render(); }

void StimloopServer::wait() {
  std::unique_lock lock(state_->mutex);
  state_->stopped_cv.wait(lock, [&] { return state_->down; });
}

void StimloopServer::shutdown() {
  State& s = *state_;
  {
    std::lock_guard lock(s.mutex);
    if (s.stopped) return;
    s.stopped = true;
  }
  const auto t0 = std::chrono::steady_clock::now();
  s.serving = false;
  if (s.server) {
    s.server->GetHealthCheckService()->SetServingStatus(false);
    // gRPC stops taking calls at once; calls in flight may finish during a short grace period.
    // Then the engine stops: every call still waiting on it ends with UNAVAILABLE and a message
    // from the server (gRPC only waits for calls to end, it cannot end them itself), and gRPC
    // cancels whatever is left (a client that stopped reading).
    std::promise<void> grpc_down;
    auto down = grpc_down.get_future();
    std::thread stopper([&] {
      s.server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace + kShutdownCancel);
      grpc_down.set_value();
    });
    down.wait_for(kShutdownGrace);
    if (s.engine) s.engine->shutdown();
    stopper.join();
  }
  if (s.engine) s.engine->shutdown();
  s.metrics_endpoint.reset();
  spdlog::info(
      "event=stopped ms={:.0f}",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  {
    std::lock_guard lock(s.mutex);
    s.down = true;
  }
  s.stopped_cv.notify_all();
}

}  // namespace stimloop::service
