// The one rule for echoing user input (ids, paths, field values) in messages: at most `limit`
// characters, control characters replaced, with the full length said. A hostile 100 KB id must
// not come back whole: gRPC carries the message in a header, and a client's metadata limit
// would break the connection.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

namespace stimloop {

inline constexpr std::size_t kEchoLimit = 128;

inline std::string truncated_id(const std::string& text, std::size_t limit = kEchoLimit) {
  std::string out;
  out.reserve(std::min(text.size(), limit));
  for (std::size_t i = 0; i < text.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (text.size() > limit) out += "...(" + std::to_string(text.size()) + " characters)";
  return out;
}

}  // namespace stimloop
