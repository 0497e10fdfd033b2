// An in-process stimloop-server on 127.0.0.1 with an ephemeral port (the real server library,
// real gRPC over loopback), and clients for it. Defaults: CPU backend, the demo models, /metrics
// on an ephemeral port, logs at warn level.
#pragma once

#include <memory>
#include <string>

#include "client/lib/stimloop_client.h"
#include "server/service/server.h"

namespace stimloop::testing {

class TestServer {
 public:
  static service::ServerOptions default_options();
  // Fails the current test (REQUIRE) when the server does not start.
  static std::unique_ptr<TestServer> start(service::ServerOptions options = default_options());

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  service::StimloopServer& server() { return *server_; }
  // A client with these options; the address is filled in. Uses REQUIRE: main thread only.
  std::unique_ptr<client::StimloopClient> client(client::ClientOptions options = {}) const;
  // The same without Catch2 assertions (Catch2 v2 is not thread-safe): for worker threads.
  // Null when the client cannot be made.
  std::unique_ptr<client::StimloopClient> client_in_thread() const;
  // GET /metrics as text ("" when the endpoint is off or unreachable).
  std::string scrape_metrics() const;
  // Scrapes until metric `name{labels}` reads `expected` or `timeout_s` passes; returns the last
  // scrape. Counters the engine adds to after a slice's events went out (its steps) may lag the
  // client's last message by a moment.
  std::string scrape_metrics_until(const std::string& name_and_labels, double expected,
                                   double timeout_s = 5.0) const;

 private:
  std::unique_ptr<service::StimloopServer> server_;
};

// A demo-sized raw image (112 x 112 RGB) with a seeded pattern.
std::vector<std::uint8_t> test_pixels(int seed, int height = 112, int width = 112);

// The value of a metric line `name{labels}` in Prometheus text (NaN when absent).
double metric_value(const std::string& text, const std::string& name_and_labels);

}  // namespace stimloop::testing
