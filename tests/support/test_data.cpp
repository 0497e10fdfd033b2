#include "tests/support/test_data.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace stimloop::test {
namespace {

std::string configured_dir() {
  if (const char* env = std::getenv("STIMLOOP_V4_DATA"); env != nullptr && *env != '\0') {
    return env;
  }
  return (fs::path(STIMLOOP_SOURCE_DIR) / ".." / "shared" / "v4").lexically_normal().string();
}

}  // namespace

std::optional<std::string> v4_data_dir() {
  const std::string dir = configured_dir();
  std::error_code ec;
  if (fs::is_regular_file(fs::path(dir) / "golden" / "README.md", ec)) return dir;
  return std::nullopt;
}

void print_skip(const std::string& what) {
  std::cout << "SKIPPED (" << what << "): published V4 data not found at " << configured_dir()
            << "; set STIMLOOP_V4_DATA to the folder holding compact_models/ and golden/\n";
}

std::string scratch_dir(const std::string& name) {
  const fs::path dir = fs::path(STIMLOOP_BINARY_DIR) / "test-scratch" / name;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  return dir.string();
}

}  // namespace stimloop::test
