#include "tests/integration/server_fixture.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "tests/support/test_data.h"

namespace stimloop::testing {

service::ServerOptions TestServer::default_options() {
  service::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.backend = "cpu";
  o.metrics_listen = "127.0.0.1:0";
  // Each server its own session store: ctest runs test cases as parallel processes.
  static std::atomic<int> counter{0};
  o.data_dir = test::scratch_dir("sessions-" + std::to_string(getpid()) + "-" +
                                 std::to_string(counter++));
  return o;
}

std::unique_ptr<TestServer> TestServer::start(service::ServerOptions options) {
  spdlog::set_level(spdlog::level::warn);
  auto started = service::StimloopServer::start(options);
  INFO(started.status().to_string());
  REQUIRE(started.ok());
  auto test_server = std::unique_ptr<TestServer>(new TestServer());
  test_server->server_ = std::move(started).value();
  return test_server;
}

std::unique_ptr<client::StimloopClient> TestServer::client(client::ClientOptions options) const {
  options.address = address();
  auto c = client::StimloopClient::connect(options);
  INFO(c.status().to_string());
  REQUIRE(c.ok());
  return std::move(c).value();
}

std::unique_ptr<client::StimloopClient> TestServer::client_in_thread() const {
  client::ClientOptions options;
  options.address = address();
  auto c = client::StimloopClient::connect(options);
  return c.ok() ? std::move(c).value() : nullptr;
}

std::string TestServer::scrape_metrics() const {
  if (server_->metrics_port() == 0) return {};
  httplib::Client http("127.0.0.1", server_->metrics_port());
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return {};
  return res->body;
}

std::vector<std::uint8_t> test_pixels(int seed, int height, int width) {
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(height) * width * 3);
  std::uint32_t state = 2654435761u * static_cast<std::uint32_t>(seed + 1);
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    const int y = static_cast<int>(i / (width * 3)), x = static_cast<int>((i / 3) % width);
    const double wave = 127.5 + 90.0 * std::sin(0.2 * x + 0.13 * y + seed);
    pixels[i] = static_cast<std::uint8_t>(std::clamp(wave + double(state >> 28) - 8.0, 0.0, 255.0));
  }
  return pixels;
}

std::string TestServer::scrape_metrics_until(const std::string& name_and_labels, double expected,
                                             double timeout_s) const {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::string text = scrape_metrics();
  while (metric_value(text, name_and_labels) != expected &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = scrape_metrics();
  }
  return text;
}

double metric_value(const std::string& text, const std::string& name_and_labels) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name_and_labels + " ", 0) == 0) {
      return std::stod(line.substr(name_and_labels.size() + 1));
    }
  }
  return std::nan("");
}

}  // namespace stimloop::testing
