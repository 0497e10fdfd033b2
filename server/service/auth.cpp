#include "server/service/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>

namespace stimloop::service {
namespace {

std::array<unsigned char, 32> digest(const std::string& text) {
  std::array<unsigned char, 32> d{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d.data());
  return d;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

}  // namespace

StatusOr<TokenAuthenticator> TokenAuthenticator::from_file(const std::string& path) {
  TokenAuthenticator auth;
  if (path.empty()) return auth;
  std::ifstream in(path);
  if (!in) return not_found("--auth-token-file: cannot read " + path);
  for (std::string line; std::getline(in, line);) {
    const std::string token = trim(line);
    if (token.empty() || token[0] == '#') continue;
    if (token.size() < 16) {
      return invalid_argument("--auth-token-file: tokens must be at least 16 characters (" + path +
                              ")");
    }
    auth.digests_.push_back(digest(token));
  }
  if (auth.digests_.empty()) return invalid_argument("--auth-token-file: no token in " + path);
  return auth;
}

bool TokenAuthenticator::accepts(const std::string& token) const {
  const auto d = digest(token);
  bool match = false;
  for (const auto& known : digests_) {  // every token compared: no early exit
    match |= CRYPTO_memcmp(known.data(), d.data(), d.size()) == 0;
  }
  return match;
}

Status TokenAuthenticator::check(const grpc::ServerContextBase& context) const {
  if (!enabled()) return Status::Ok();
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return {StatusCode::kUnauthenticated, "missing 'authorization: Bearer <token>' metadata"};
  }
  const std::string value(it->second.data(), it->second.size());
  const std::string prefix = "Bearer ";
  if (value.compare(0, prefix.size(), prefix) != 0 || !accepts(value.substr(prefix.size()))) {
    return {StatusCode::kUnauthenticated, "invalid bearer token"};
  }
  return Status::Ok();
}

}  // namespace stimloop::service
