#include "server/service/metrics_endpoint.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>

namespace stimloop::service {

StatusOr<std::pair<std::string, int>> split_host_port(const std::string& address,
                                                      const std::string& flag) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return invalid_argument(flag + " '" + address + "' is not HOST:PORT");
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(address.substr(colon + 1), &used);
    if (used != address.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) return invalid_argument(flag + " '" + address + "': bad port");
  return std::pair{host, port};
}

bool is_loopback_host(const std::string& host) {
  // Only literal addresses: a name such as "127.example.org" may resolve anywhere.
  std::string lower = host;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::start(
    const std::string& listen, std::function<std::string()> render) {
  ASSIGN_OR_RETURN(auto host_port, split_host_port(listen, "--metrics-listen"));
  auto endpoint = std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint());
  endpoint->server_ = std::make_unique<httplib::Server>();
  endpoint->server_->Get(
      "/metrics", [render = std::move(render)](const httplib::Request&, httplib::Response& res) {
        res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
      });
  auto& [host, port] = host_port;
  if (port == 0) {
    endpoint->port_ = endpoint->server_->bind_to_any_port(host);
  } else {
    endpoint->port_ = endpoint->server_->bind_to_port(host, port) ? port : -1;
  }
  if (endpoint->port_ < 0) return unavailable("--metrics-listen: cannot bind " + listen);
  endpoint->thread_ = std::thread([s = endpoint->server_.get()] { s->listen_after_bind(); });
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace stimloop::service
