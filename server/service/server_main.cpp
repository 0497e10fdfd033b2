// stimloop-server: keeps the models resident and serves stimloop.v1 over gRPC (see README,
// "Server"). SIGINT/SIGTERM shut it down cleanly: running calls get a short grace period.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "server/service/server.h"

namespace {

// Signals are turned into a shutdown by a waiting thread (nothing async-signal-unsafe runs in
// the handler).
void block_termination_signals(sigset_t& set) {
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  using stimloop::service::ServerOptions;
  CLI::App app{"stimloop-server: compact V4 models and stimulus synthesis over gRPC"};
  app.set_version_flag("--version", STIMLOOP_VERSION);
  ServerOptions o;
  std::string log_level = "info";
  app.add_option("--models", o.model_dirs,
                 "Directory of .keras models (repeatable; none: the built-in demo models)");
  app.add_flag("--with-demo", o.with_demo, "Also serve the demo models next to --models");
  app.add_option("--listen", o.listen, "HOST:PORT for gRPC (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--backend", o.backend, "cpu, cuda, cudnn, cudnn-tf32 or auto")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate chain: serve TLS");
  app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "PEM CA bundle: require client certificates signed by it (mutual TLS)");
  app.add_option("--auth-token-file", o.auth_token_file,
                 "File of accepted bearer tokens, one per line (>= 16 characters each)");
  app.add_flag("--insecure", o.insecure,
               "Allow a non-loopback --listen without TLS and a token (not recommended)");
  app.add_option("--metrics-listen", o.metrics_listen,
                 "HOST:PORT for the Prometheus /metrics endpoint (default: off)");
  app.add_option("--results-dir", o.results_dir,
                 "Also write every synthesized stimulus (PNG + record) here");
  app.add_option("--data-dir", o.data_dir,
                 "Closed-loop sessions: SQLite store and shown images (created if needed)")
      ->capture_default_str();
  app.add_option("--pool", o.pools,
                 "NAME=PATH: an image pool for sessions, a directory of PNG/JPEG or a .zip of "
                 "them (repeatable)");
  app.add_option("--max-queue", o.max_queue, "Jobs per priority before RESOURCE_EXHAUSTED")
      ->capture_default_str();
  app.add_option("--max-batch-images", o.max_batch_images,
                 "Images one batched predict/gradient pass may gather")
      ->capture_default_str();
  app.add_option("--max-step-images", o.max_step_images,
                 "Seeds of a non-rig synthesis batch stepped per engine turn (-1: 1 on the CPU, "
                 "whole batches on a GPU)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // Logs go to stderr (stdout carries only the "listening on port" line scripts read).
  spdlog::set_default_logger(spdlog::stderr_logger_mt("stimloop"));
  spdlog::flush_on(spdlog::level::info);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z level=%l %v");
  spdlog::set_level(spdlog::level::from_str(log_level));

  sigset_t signals;
  block_termination_signals(signals);  // before any thread starts, so all inherit the mask

  auto server = stimloop::service::StimloopServer::start(o);
  if (!server.ok()) {
    std::fprintf(stderr, "stimloop-server: %s\n", server.status().to_string().c_str());
    return 1;
  }
  // Scripts read the bound port from this line (useful with --listen HOST:0).
  std::printf("stimloop-server listening on port %d (backend %s)\n", (*server)->port(),
              (*server)->backend_name().c_str());
  std::fflush(stdout);

  std::thread signal_waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    spdlog::info("event=signal signal={}", signal);
    (*server)->shutdown();
  });
  (*server)->wait();
  signal_waiter.detach();  // still blocked in sigwait when shutdown came from elsewhere
  return 0;
}
