#include "common/truncate.h"
#include "server/sessions/image_pool.h"

namespace stimloop::sessions {

StatusOr<PoolFlag> parse_pool_flag(const std::string& flag) {
  const auto eq = flag.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == flag.size()) {
    return invalid_argument("--pool takes NAME=PATH, got '" + truncated_id(flag, 200) + "'");
  }
  PoolFlag p{flag.substr(0, eq), flag.substr(eq + 1)};
  if (p.name.size() > 64) return invalid_argument("--pool: NAME is longer than 64 characters");
  for (char c : p.name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return invalid_argument("--pool: NAME '" + p.name +
                              "' may hold only letters, digits, '-', '_' and '.'");
    }
  }
  return p;
}

}  // namespace stimloop::sessions
