// The Prometheus endpoint: GET /metrics on --metrics-listen HOST:PORT, served by cpp-httplib on
// its own thread. The text comes from a callback, so this file knows nothing of the engine.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace stimloop::service {

class MetricsEndpoint {
 public:
  // Binds HOST:PORT (PORT 0: any free port) and starts serving.
  static StatusOr<std::unique_ptr<MetricsEndpoint>> start(const std::string& listen,
                                                          std::function<std::string()> render);
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Splits HOST:PORT ("[::1]:9090" too). INVALID_ARGUMENT naming `flag` otherwise.
StatusOr<std::pair<std::string, int>> split_host_port(const std::string& address,
                                                      const std::string& flag);
// True for "localhost" and the literal loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x.y.z);
// false for any other name, even one that starts with "127.".
bool is_loopback_host(const std::string& host);

}  // namespace stimloop::service
