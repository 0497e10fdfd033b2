#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace stimloop {

// Lower-case hex SHA-256 of a byte buffer (OpenSSL's implementation).
std::string sha256_hex(std::span<const std::uint8_t> bytes);

}  // namespace stimloop
