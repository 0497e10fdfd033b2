// stimloop-server as a library: options, start-up (listen, load and warm the models, then report
// SERVING on the health service), shutdown. The executable (server_main.cpp) and the integration
// tests both use it, so the tests exercise the real server on an ephemeral port.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace stimloop::service {

struct ServerOptions {
  std::vector<std::string> model_dirs;  // none: the demo models
  bool with_demo = false;               // serve the demo models next to model_dirs
  std::string listen = "127.0.0.1:50051";
  std::string backend = "auto";  // cpu, cuda, auto
  int threads = 0;               // CPU threads, 0: all cores
  std::string tls_cert, tls_key, tls_client_ca;
  std::string auth_token_file;
  bool insecure = false;       // allow a non-loopback listen without TLS and a token
  std::string metrics_listen;  // HOST:PORT for /metrics; empty: off
  std::string results_dir;     // keep a copy of every stimulus here; empty: off
  int max_queue = 64;          // jobs per priority
  int max_batch_images = 256;  // images one predict/gradient batch gathers
  // Seeds of a non-rig synthesis batch stepped per engine slice (what a rig may wait behind);
  // -1: 1 on the CPU (batching gains nothing there), 0 = whole batches on a GPU.
  int max_step_images = -1;
  // A connection that has not completed its HTTP/2 (and TLS) handshake by then is closed.
  int handshake_timeout_ms = 10000;
  // Closed-loop sessions: the SQLite store and stored images live here (created if needed).
  std::string data_dir = "stimloop-data";
  std::vector<std::string> pools;  // NAME=PATH image pools sessions draw from
};

// Shutdown: calls in flight get kShutdownGrace to finish, then the engine ends the ones waiting
// on it (UNAVAILABLE) and, kShutdownCancel later, gRPC cancels any still open.
inline constexpr std::chrono::milliseconds kShutdownGrace{1200};
inline constexpr std::chrono::milliseconds kShutdownCancel{500};

// Concurrent calls one connection may carry, and the memory gRPC may use for all of them.
inline constexpr int kMaxConcurrentStreams = 256;
inline constexpr std::size_t kGrpcMemoryBytes = std::size_t{4} << 30;

// Checks the combination of options (TLS pairs, the loopback rule for --listen and
// --metrics-listen) without touching files.
Status check_options(const ServerOptions& options);

class StimloopServer {
 public:
  // Returns once the models are loaded, warmed up and the health service says SERVING.
  static StatusOr<std::unique_ptr<StimloopServer>> start(const ServerOptions& options);
  ~StimloopServer();

  int port() const;          // the gRPC port actually bound
  int metrics_port() const;  // 0 when off
  std::string backend_name() const;
  std::string render_metrics() const;
  void wait();      // blocks until shutdown() (from another thread or a signal handler's thread)
  void shutdown();  // stops accepting calls, finishes or cancels the running ones, stops the engine

 private:
  StimloopServer();
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace stimloop::service
