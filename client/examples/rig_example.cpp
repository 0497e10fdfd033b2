// A recording rig's loop, reduced to its essentials: before each trial, ask the server for a
// preferred stimulus with a hard deadline, show it (here: note its size), and print how long the
// request took. The server returns the best stimulus reached by the deadline (stop reason
// DEADLINE) rather than an error, so a trial is never left without a stimulus.
//
//   stimloop-rig-example --server 127.0.0.1:50051 --model demo --trials 10 --deadline-ms 250
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "client/lib/stimloop_client.h"

int main(int argc, char** argv) {
  namespace v1 = stimloop::v1;
  CLI::App app{"stimloop-rig-example: one stimulus per trial under a deadline"};
  stimloop::client::ClientOptions options;
  std::string model = "demo";
  int trials = 10, steps = 1000, output_index = 0;
  double deadline_ms = 250, interval_ms = 500;
  app.add_option("--server", options.address, "HOST:PORT")->required();
  app.add_option("--tls-ca", options.tls_ca, "PEM CA: connect with TLS");
  app.add_option("--tls-cert", options.tls_cert, "PEM client certificate (mutual TLS)");
  app.add_option("--tls-key", options.tls_key, "PEM key of --tls-cert");
  app.add_option("--token-file", options.token_file, "Bearer token file");
  app.add_option("--model", model, "Model id")->capture_default_str();
  app.add_option("--output-index", output_index, "Output to drive")->capture_default_str();
  app.add_option("--trials", trials, "Trials")->capture_default_str();
  app.add_option("--steps", steps, "cowley2026 steps asked for")->capture_default_str();
  app.add_option("--deadline-ms", deadline_ms, "Deadline per stimulus")->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "Trial period")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto client = stimloop::client::StimloopClient::connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "error: %s\n", client.status().to_string().c_str());
    return 1;
  }
  if (auto s = (*client)->wait_until_serving(std::chrono::seconds(30)); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
    return 1;
  }
  std::printf("%-6s %10s %8s %-10s %12s\n", "trial", "latency_ms", "steps", "stop", "response");
  auto next = std::chrono::steady_clock::now();
  int failures = 0;
  for (int trial = 0; trial < trials; ++trial) {
    std::this_thread::sleep_until(next);
    next += std::chrono::microseconds(static_cast<long long>(interval_ms * 1000));
    v1::SynthesizeRequest request;
    request.set_model_id(model);
    request.set_priority(v1::RIG);
    request.set_deadline_ms(deadline_ms);
    request.set_result_encoding(v1::RAW_RGB8);  // straight to the display, no PNG decoding
    auto* spec = request.mutable_spec();
    spec->set_objective(v1::MAX);
    spec->set_output_index(output_index);
    spec->set_steps(steps);
    spec->set_seed(static_cast<std::uint64_t>(trial));
    const auto t0 = std::chrono::steady_clock::now();
    int steps_done = 0;
    std::string stop = "-";
    double response = 0.0;
    const auto status = (*client)->synthesize(request, [&](const v1::SynthesisEvent& e) {
      if (e.kind() == v1::SynthesisEvent::STIMULUS) {
        response = e.stimulus().response();
        steps_done = e.steps_done();
        stop = e.stop_reason();
      }
    });
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!status.ok()) {
      ++failures;
      std::printf("%-6d %10.1f error: %s\n", trial, ms, status.to_string().c_str());
      continue;
    }
    std::printf("%-6d %10.1f %8d %-10s %12.5g\n", trial, ms, steps_done, stop.c_str(), response);
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}
