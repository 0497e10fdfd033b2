// Bearer-token authentication: `authorization: Bearer <token>` metadata checked against the
// tokens of --auth-token-file (one per line; blank lines and lines starting with # ignored).
// Tokens are compared through their SHA-256 digests with CRYPTO_memcmp, so neither a token's
// content nor its length leaks through timing.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <grpcpp/server_context.h>

#include "common/status.h"

namespace stimloop::service {

class TokenAuthenticator {
 public:
  // No file: every call is allowed.
  static StatusOr<TokenAuthenticator> from_file(const std::string& path);
  bool enabled() const { return !digests_.empty(); }
  // UNAUTHENTICATED (without echoing what was sent) when a token is required and missing/wrong.
  Status check(const grpc::ServerContextBase& context) const;
  bool accepts(const std::string& token) const;

 private:
  std::vector<std::array<unsigned char, 32>> digests_;
};

}  // namespace stimloop::service
