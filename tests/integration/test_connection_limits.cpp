// Connections that hold the server's resources without doing anything: raw TCP sockets that never
// start the HTTP/2 handshake are closed after the handshake timeout, while real clients are
// served. And request ids made for many first calls at once share one salt and never repeat.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "tests/integration/server_fixture.h"

namespace stimloop::testing {
namespace {

namespace v1 = ::stimloop::v1;
using Clock = std::chrono::steady_clock;

int connect_raw(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True once the peer closed the socket (EOF or reset), false if still open at `until`.
bool closed_by_peer(int fd, Clock::time_point until) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;  // anything the server sent first (its SETTINGS) is read and skipped
  }
}

}  // namespace

TEST_CASE("sockets that never finish the handshake are closed after the handshake timeout",
          "[integration][security]") {
  auto options = TestServer::default_options();
  options.handshake_timeout_ms = 500;
  auto ts = TestServer::start(options);
  constexpr int kSockets = 20;
  std::vector<int> fds;
  for (int i = 0; i < kSockets; ++i) {
    const int fd = connect_raw(ts->server().port());
    REQUIRE(fd >= 0);
    fds.push_back(fd);
  }
  // A real client is served meanwhile.
  auto c = ts->client();
  CHECK(c->list_models().ok());
  const auto t0 = Clock::now();
  int closed = 0;
  for (int fd : fds) {
    closed += closed_by_peer(fd, t0 + std::chrono::seconds(6));
    ::close(fd);
  }
  INFO("closed by the server within 6 s: " << closed << " of " << kSockets);
  CHECK(closed == kSockets);
  CHECK(c->list_models().ok());
}

TEST_CASE("the handshake timeout is checked", "[integration][security]") {
  auto options = TestServer::default_options();
  options.handshake_timeout_ms = 0;
  CHECK(service::check_options(options).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("request ids made concurrently share one salt and never repeat",
          "[integration][security]") {
  auto ts = TestServer::start();
  constexpr int kThreads = 16;
  std::vector<std::string> ids(kThreads);
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int k = 0; k < kThreads; ++k) {
    threads.emplace_back([&, k] {
      auto c = ts->client_in_thread();
      if (!c) return;
      v1::PredictRequest request;
      request.add_model_ids("demo");
      *request.add_images() = client::raw_image(test_pixels(k), 112, 112);
      while (!go.load()) std::this_thread::yield();
      auto r = c->predict(request);
      if (r.ok()) ids[k] = r->request_id();
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  std::set<std::string> unique, salts;
  for (const auto& id : ids) {
    REQUIRE(!id.empty());
    unique.insert(id);
    salts.insert(id.substr(0, id.find('-')));
  }
  CHECK(unique.size() == kThreads);
  CHECK(salts.size() == 1);
}

}  // namespace stimloop::testing
