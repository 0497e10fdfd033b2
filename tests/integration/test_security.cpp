// TLS, mutual TLS, bearer tokens and the loopback rule, end to end. The certificates are made at
// test time with the `openssl` command in a scratch directory (a CA, a server certificate for
// localhost / 127.0.0.1, a client certificate from the CA, and an unrelated CA with its own
// client certificate); the TLS tests are skipped when `openssl` is absent.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/server_fixture.h"

namespace stimloop::testing {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::stimloop::v1;
using client::ClientOptions;
using client::StimloopClient;

constexpr auto kCallTimeout = std::chrono::seconds(10);

// A fresh directory under the system's temporary directory, removed at exit.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) {
    std::string pattern = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name), std::ios::binary) << text;
    return file(name);
  }

 private:
  std::string path_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool have_openssl() {
  static const bool found = std::system("openssl version >/dev/null 2>&1") == 0;
  return found;
}

// The certificates, made once per process.
struct Pki {
  ScratchDir dir{"stimloop-pki"};
  bool ok = false;
  std::string log;  // openssl's output when something failed
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca, other_client_cert, other_client_key;

  bool run(const std::string& command) {
    const std::string line = "cd '" + dir.file("") + "' && " + command + " >>openssl.log 2>&1";
    return std::system(line.c_str()) == 0;
  }

  // The request section of an openssl config: no prompts, the subject's common name.
  static std::string req_config(const std::string& common_name, const std::string& extra) {
    return "[req]\ndistinguished_name = dn\nprompt = no\n" + extra + "[dn]\nCN = " + common_name +
           "\n";
  }

  // A self-signed CA: NAME.pem, NAME.key.
  bool make_ca(const std::string& name, const std::string& common_name) {
    std::string config = req_config(common_name, "x509_extensions = v3_ca\n");
    config += "[v3_ca]\n";
    config += "basicConstraints = critical, CA:TRUE\n";
    config += "keyUsage = critical, keyCertSign, cRLSign\n";
    config += "subjectKeyIdentifier = hash\n";
    dir.write(name + ".cnf", config);
    return run("openssl req -x509 -new -config " + name + ".cnf -newkey ec -pkeyopt " +
               "ec_paramgen_curve:prime256v1 -nodes -keyout " + name + ".key -out " + name +
               ".pem -days 2");
  }

  // A leaf certificate signed by CA_NAME: NAME.pem, NAME.key. `usage` is serverAuth or
  // clientAuth; `alt_names` the subjectAltName ("" for none).
  bool make_leaf(const std::string& name, const std::string& ca_name,
                 const std::string& common_name, const std::string& usage,
                 const std::string& alt_names, int serial) {
    std::string config = req_config(common_name, "");
    config += "[ext]\n";
    config += "basicConstraints = critical, CA:FALSE\n";
    config += "keyUsage = critical, digitalSignature\n";
    config += "extendedKeyUsage = " + usage + "\n";
    config += "subjectKeyIdentifier = hash\n";
    config += "authorityKeyIdentifier = keyid\n";
    if (!alt_names.empty()) config += "subjectAltName = " + alt_names + "\n";
    dir.write(name + ".cnf", config);
    return run("openssl req -new -config " + name + ".cnf -newkey ec -pkeyopt " +
               "ec_paramgen_curve:prime256v1 -nodes -keyout " + name + ".key -out " + name +
               ".csr") &&
           run("openssl x509 -req -in " + name + ".csr -CA " + ca_name + ".pem -CAkey " + ca_name +
               ".key -set_serial " + std::to_string(serial) + " -days 2 -extfile " + name +
               ".cnf -extensions ext -out " + name + ".pem");
  }

  Pki() {
    if (!dir.ok() || !have_openssl()) return;
    ok = make_ca("ca", "stimloop test CA") &&
         make_leaf("server", "ca", "localhost", "serverAuth", "DNS:localhost, IP:127.0.0.1", 2) &&
         make_leaf("client", "ca", "stimloop test client", "clientAuth", "", 3) &&
         make_ca("other_ca", "unrelated test CA") &&
         make_leaf("other_client", "other_ca", "stimloop test client", "clientAuth", "", 4);
    if (!ok) log = read_text(dir.file("openssl.log"));
    ca = dir.file("ca.pem");
    server_cert = dir.file("server.pem");
    server_key = dir.file("server.key");
    client_cert = dir.file("client.pem");
    client_key = dir.file("client.key");
    other_ca = dir.file("other_ca.pem");
    other_client_cert = dir.file("other_client.pem");
    other_client_key = dir.file("other_client.key");
  }
};

// nullptr when openssl is absent (the caller skips); fails the test when openssl fails.
const Pki* pki() {
  static Pki p;
  if (!have_openssl()) return nullptr;
  INFO("openssl failed:\n" << p.log);
  REQUIRE(p.ok);
  return &p;
}

#define STIMLOOP_SKIP_WITHOUT_OPENSSL() \
  if (!have_openssl()) {                \
    WARN("SKIPPED: openssl not found"); \
    return;                             \
  }

// Tokens: the server's file holds a comment, a blank line and two tokens (one padded by spaces).
constexpr const char* kTokenOne = "token-one-0123456789abcdef";
constexpr const char* kTokenTwo = "token-two-fedcba9876543210";

struct TokenFiles {
  ScratchDir dir{"stimloop-tokens"};
  std::string server, one, two, wrong, near_miss, too_short, no_token;
  TokenFiles() {
    server = dir.write("server_tokens", std::string("# stimloop-server tokens, one a line\n\n  ") +
                                            kTokenOne + "  \n" + kTokenTwo + "\n");
    one = dir.write("one", std::string(kTokenOne) + "\n");
    two = dir.write("two", std::string("# the second token\n") + kTokenTwo + "\n");
    wrong = dir.write("wrong", "token-three-not-known-000\n");
    near_miss = dir.write("near_miss", std::string(kTokenOne).substr(1) + "\n");
    too_short = dir.write("too_short", std::string("# ok\n") + kTokenOne + "\nshort-token\n");
    no_token = dir.write("no_token", "# only a comment\n\n");
  }
};

const TokenFiles& tokens() {
  static TokenFiles t;
  REQUIRE(t.dir.ok());
  return t;
}

client::CallOptions timed() {
  client::CallOptions call;
  call.timeout = kCallTimeout;
  return call;
}

// Client options: TLS trusting `ca` (plaintext when empty), a client certificate, a token file.
ClientOptions tls_client(const std::string& ca, const std::string& cert = {},
                         const std::string& key = {}) {
  ClientOptions o;
  o.tls_ca = ca;
  o.tls_cert = cert;
  o.tls_key = key;
  return o;
}

ClientOptions with_token(const std::string& token_file, ClientOptions o = {}) {
  o.token_file = token_file;
  return o;
}

ClientOptions with_server_name(const std::string& name, ClientOptions o) {
  o.tls_server_name = name;
  return o;
}

// The outcome of one call: its status and, for Synthesize, the events that arrived.
struct Outcome {
  Status status;
  int events = 0;
};

struct Rpc {
  const char* name;
  std::function<Outcome(StimloopClient&)> call;
};

std::vector<Rpc> every_rpc() {
  const client::CallOptions call = timed();
  return {
      {"ListModels", [=](StimloopClient& c) { return Outcome{c.list_models(call).status()}; }},
      {"GetModel", [=](StimloopClient& c) { return Outcome{c.get_model("demo", call).status()}; }},
      {"Predict",
       [=](StimloopClient& c) {
         v1::PredictRequest r;
         r.add_model_ids("demo");
         *r.add_images() = client::raw_image(test_pixels(0), 112, 112);
         return Outcome{c.predict(r, call).status()};
       }},
      {"InputGradient",
       [=](StimloopClient& c) {
         v1::InputGradientRequest r;
         r.set_model_id("demo");
         *r.add_images() = client::raw_image(test_pixels(0), 112, 112);
         return Outcome{c.input_gradient(r, call).status()};
       }},
      {"Synthesize",
       [=](StimloopClient& c) {
         v1::SynthesizeRequest r;
         r.set_model_id("demo");
         r.mutable_spec()->set_objective(v1::MAX);
         r.mutable_spec()->set_steps(5);
         Outcome out;
         out.status = c.synthesize(
             r, [&](const v1::SynthesisEvent&) { ++out.events; }, call);
         return out;
       }},
  };
}

std::unique_ptr<StimloopClient> connect(const std::string& address, ClientOptions options) {
  options.address = address;
  auto c = StimloopClient::connect(options);
  INFO(c.status().to_string());
  REQUIRE(c.ok());
  return std::move(c).value();
}

Status list_models(StimloopClient& c) { return c.list_models(timed()).status(); }

service::ServerOptions tls_options(const Pki& p) {
  auto o = TestServer::default_options();
  o.tls_cert = p.server_cert;
  o.tls_key = p.server_key;
  return o;
}

}  // namespace

TEST_CASE("TLS: a client trusting the CA is served; plaintext and other CAs are not",
          "[integration][security]") {
  STIMLOOP_SKIP_WITHOUT_OPENSSL();
  const Pki& p = *pki();
  auto ts = TestServer::start(tls_options(p));

  SECTION("a client with the CA") {
    auto c = ts->client(tls_client(p.ca));
    auto models = c->list_models(timed());
    INFO(models.status().to_string());
    REQUIRE(models.ok());
    CHECK(models->models_size() == 2);
    const Outcome predicted = every_rpc()[2].call(*c);
    INFO(predicted.status.to_string());
    CHECK(predicted.status.ok());
  }
  SECTION("the name checked can be overridden, and a wrong name fails") {
    auto named = ts->client(with_server_name("localhost", tls_client(p.ca)));
    const Status good = list_models(*named);
    INFO(good.to_string());
    CHECK(good.ok());
    auto misnamed = ts->client(with_server_name("not-the-server.example", tls_client(p.ca)));
    const Status bad = list_models(*misnamed);
    INFO(bad.to_string());
    CHECK_FALSE(bad.ok());
  }
  SECTION("a plaintext client fails") {
    auto c = ts->client();
    const Status s = list_models(*c);
    INFO(s.to_string());
    CHECK_FALSE(s.ok());
    CHECK(s.code() == StatusCode::kUnavailable);
  }
  SECTION("a client trusting an unrelated CA fails") {
    auto c = ts->client(tls_client(p.other_ca));
    const Status s = list_models(*c);
    INFO(s.to_string());
    CHECK_FALSE(s.ok());
    CHECK(s.code() == StatusCode::kUnavailable);
  }
}

TEST_CASE("mutual TLS: only clients with a certificate from the client CA are served",
          "[integration][security]") {
  STIMLOOP_SKIP_WITHOUT_OPENSSL();
  const Pki& p = *pki();
  auto options = tls_options(p);
  options.tls_client_ca = p.ca;
  auto ts = TestServer::start(options);

  SECTION("a CA-signed client certificate") {
    auto c = ts->client(tls_client(p.ca, p.client_cert, p.client_key));
    for (const Rpc& rpc : every_rpc()) {
      const Outcome out = rpc.call(*c);
      INFO(rpc.name << ": " << out.status.to_string());
      CHECK(out.status.ok());
    }
  }
  SECTION("no client certificate") {
    auto c = ts->client(tls_client(p.ca));
    const Status s = list_models(*c);
    INFO(s.to_string());
    CHECK_FALSE(s.ok());
  }
  SECTION("a client certificate from an unrelated CA") {
    auto c = ts->client(tls_client(p.ca, p.other_client_cert, p.other_client_key));
    const Status s = list_models(*c);
    INFO(s.to_string());
    CHECK_FALSE(s.ok());
  }
  SECTION("a plaintext client") {
    auto c = ts->client();
    const Status s = list_models(*c);
    INFO(s.to_string());
    CHECK_FALSE(s.ok());
  }
}

TEST_CASE("tokens: every RPC needs a valid bearer token; health does not",
          "[integration][security]") {
  const TokenFiles& t = tokens();
  auto options = TestServer::default_options();
  options.auth_token_file = t.server;
  auto ts = TestServer::start(options);

  SECTION("missing, wrong or nearly right tokens are UNAUTHENTICATED on every RPC") {
    for (const std::string& file : {std::string(), t.wrong, t.near_miss}) {
      auto c = ts->client(with_token(file));
      for (const Rpc& rpc : every_rpc()) {
        const Outcome out = rpc.call(*c);
        INFO("token file '" << file << "', " << rpc.name << ": " << out.status.to_string());
        CHECK(out.status.code() == StatusCode::kUnauthenticated);
        CHECK(out.events == 0);  // not even ACCEPTED
      }
    }
  }
  SECTION("either valid token is accepted on every RPC") {
    for (const std::string& file : {t.one, t.two}) {
      auto c = ts->client(with_token(file));
      for (const Rpc& rpc : every_rpc()) {
        const Outcome out = rpc.call(*c);
        INFO("token file " << file << ", " << rpc.name << ": " << out.status.to_string());
        CHECK(out.status.ok());
        if (std::string(rpc.name) == "Synthesize") CHECK(out.events >= 3);  // ACCEPTED..DONE
      }
    }
  }
  SECTION("the health service answers without a token") {
    auto c = ts->client();
    const Status s = c->wait_until_serving(std::chrono::seconds(5));
    INFO(s.to_string());
    CHECK(s.ok());
  }
}

TEST_CASE("tokens: a bad token file stops the server from starting", "[integration][security]") {
  const TokenFiles& t = tokens();
  auto options = TestServer::default_options();
  SECTION("a token shorter than 16 characters") {
    options.auth_token_file = t.too_short;
    auto started = service::StimloopServer::start(options);
    INFO(started.status().to_string());
    REQUIRE_FALSE(started.ok());
    CHECK(started.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(started.status().message(), Catch::Matchers::Contains("16"));
  }
  SECTION("a file with no token") {
    options.auth_token_file = t.no_token;
    auto started = service::StimloopServer::start(options);
    INFO(started.status().to_string());
    REQUIRE_FALSE(started.ok());
    CHECK(started.status().code() == StatusCode::kInvalidArgument);
  }
  SECTION("a file that does not exist") {
    options.auth_token_file = t.dir.file("does_not_exist");
    auto started = service::StimloopServer::start(options);
    INFO(started.status().to_string());
    REQUIRE_FALSE(started.ok());
    CHECK(started.status().code() == StatusCode::kNotFound);
  }
}

TEST_CASE("the loopback rule: a non-loopback listen needs TLS and a token, or --insecure",
          "[integration][security]") {
  service::ServerOptions o;
  o.backend = "cpu";
  auto check = [&](const service::ServerOptions& options) {
    const Status s = service::check_options(options);
    INFO("listen " << options.listen << ": " << s.to_string());
    return s;
  };

  SECTION("0.0.0.0 with nothing else") {
    o.listen = "0.0.0.0:0";
    const Status s = check(o);
    CHECK(s.code() == StatusCode::kFailedPrecondition);
    CHECK_THAT(s.message(), Catch::Matchers::Contains("--insecure"));
  }
  SECTION("0.0.0.0 with --insecure") {
    o.listen = "0.0.0.0:0";
    o.insecure = true;
    CHECK(check(o).ok());
  }
  SECTION("0.0.0.0 with TLS and a token file (no file is read)") {
    o.listen = "0.0.0.0:0";
    o.tls_cert = "/nonexistent/server.pem";
    o.tls_key = "/nonexistent/server.key";
    o.auth_token_file = "/nonexistent/tokens";
    CHECK(check(o).ok());
  }
  SECTION("0.0.0.0 with TLS but no token, or a token but no TLS") {
    o.listen = "0.0.0.0:0";
    o.tls_cert = "/nonexistent/server.pem";
    o.tls_key = "/nonexistent/server.key";
    CHECK(check(o).code() == StatusCode::kFailedPrecondition);
    o.tls_cert.clear();
    o.tls_key.clear();
    o.auth_token_file = "/nonexistent/tokens";
    CHECK(check(o).code() == StatusCode::kFailedPrecondition);
  }
  SECTION("loopback addresses need nothing") {
    for (const char* listen : {"127.0.0.1:0", "localhost:50051", "[::1]:0", "127.3.2.1:0",
                               "LocalHost:0", "[::ffff:127.0.0.1]:0"}) {
      o.listen = listen;
      CHECK(check(o).ok());
    }
  }
  SECTION("names that merely look like loopback are not") {
    for (const char* listen :
         {"127.example.org:0", "127.0.0.1.nip.io:0", "localhost.example.org:0", "127.1:0",
          "[::ffff:10.0.0.1]:0", "[::2]:0", "0.0.0.0:0", "[::]:0"}) {
      o.listen = listen;
      CHECK(check(o).code() == StatusCode::kFailedPrecondition);
    }
  }
  SECTION("--metrics-listen off loopback needs --insecure, even with TLS and a token") {
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "0.0.0.0:9090";
    Status s = check(o);
    CHECK(s.code() == StatusCode::kFailedPrecondition);
    CHECK_THAT(s.message(), Catch::Matchers::Contains("--metrics-listen") ||
                                Catch::Matchers::Contains("/metrics"));
    o.metrics_listen = "127.example.org:9090";
    CHECK(check(o).code() == StatusCode::kFailedPrecondition);
    o.metrics_listen = "0.0.0.0:9090";
    o.tls_cert = "/nonexistent/server.pem";
    o.tls_key = "/nonexistent/server.key";
    o.auth_token_file = "/nonexistent/tokens";
    CHECK(check(o).code() == StatusCode::kFailedPrecondition);
    o.insecure = true;
    CHECK(check(o).ok());
    o = service::ServerOptions{};
    o.listen = "127.0.0.1:0";
    for (const char* metrics : {"127.0.0.1:0", "localhost:9090", "[::1]:0"}) {
      o.metrics_listen = metrics;
      CHECK(check(o).ok());
    }
  }
  SECTION("--tls-cert without --tls-key, and the reverse") {
    o.listen = "127.0.0.1:0";
    o.tls_cert = "/nonexistent/server.pem";
    CHECK(check(o).code() == StatusCode::kInvalidArgument);
    o.tls_cert.clear();
    o.tls_key = "/nonexistent/server.key";
    CHECK(check(o).code() == StatusCode::kInvalidArgument);
  }
  SECTION("--tls-client-ca without a server certificate") {
    o.listen = "127.0.0.1:0";
    o.tls_client_ca = "/nonexistent/ca.pem";
    CHECK(check(o).code() == StatusCode::kInvalidArgument);
  }
  SECTION("StimloopServer::start applies the rule too") {
    o.listen = "0.0.0.0:0";
    auto started = service::StimloopServer::start(o);
    CHECK(started.status().code() == StatusCode::kFailedPrecondition);
  }
}

TEST_CASE("TLS and a token together, over localhost", "[integration][security]") {
  STIMLOOP_SKIP_WITHOUT_OPENSSL();
  const Pki& p = *pki();
  const TokenFiles& t = tokens();
  auto options = tls_options(p);
  options.auth_token_file = t.server;
  auto ts = TestServer::start(options);
  const std::string address = "localhost:" + std::to_string(ts->server().port());

  SECTION("the CA and a token: every RPC works") {
    auto c = connect(address, with_token(t.two, tls_client(p.ca)));
    for (const Rpc& rpc : every_rpc()) {
      const Outcome out = rpc.call(*c);
      INFO(rpc.name << ": " << out.status.to_string());
      CHECK(out.status.ok());
    }
  }
  SECTION("the CA but no token: UNAUTHENTICATED") {
    auto c = connect(address, tls_client(p.ca));
    for (const Rpc& rpc : every_rpc()) {
      const Outcome out = rpc.call(*c);
      INFO(rpc.name << ": " << out.status.to_string());
      CHECK(out.status.code() == StatusCode::kUnauthenticated);
    }
    CHECK(c->wait_until_serving(std::chrono::seconds(5)).ok());
  }
  SECTION("a token but plaintext: no connection") {
    auto c = connect(address, with_token(t.one));
    const Status s = list_models(*c);
    INFO(s.to_string());
    CHECK_FALSE(s.ok());
    CHECK(s.code() != StatusCode::kUnauthenticated);
  }
  SECTION("a token and an unrelated CA: no connection") {
    auto c = connect(address, with_token(t.one, tls_client(p.other_ca)));
    const Status s = list_models(*c);
    INFO(s.to_string());
    CHECK(s.code() == StatusCode::kUnavailable);
  }
}

TEST_CASE("a non-loopback listen with TLS and a token starts and serves",
          "[integration][security]") {
  STIMLOOP_SKIP_WITHOUT_OPENSSL();
  const Pki& p = *pki();
  auto options = tls_options(p);
  options.listen = "0.0.0.0:0";
  options.auth_token_file = tokens().server;
  auto ts = TestServer::start(options);
  auto c = connect("localhost:" + std::to_string(ts->server().port()),
                   with_token(tokens().one, tls_client(p.ca)));
  const Status s = list_models(*c);
  INFO(s.to_string());
  CHECK(s.ok());
}

}  // namespace stimloop::testing
