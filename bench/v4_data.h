// Where the benchmark programs find the published models and golden data: $STIMLOOP_V4_DATA
// when set (no fallback then), else ../shared/v4 next to the source tree, else ../shared/v4 from
// the working directory. Empty when none holds `marker` (a file under the data folder).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace stimloop::bench {

inline std::string find_v4_data(const std::string& marker) {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("STIMLOOP_V4_DATA"); env != nullptr && *env != '\0') {
    candidates.emplace_back(env);
  } else {
    candidates.push_back(fs::path(STIMLOOP_SOURCE_DIR) / ".." / "shared" / "v4");
    candidates.push_back(fs::path("..") / "shared" / "v4");
  }
  for (const auto& dir : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(dir / marker, ec)) return dir.lexically_normal().string();
  }
  return {};
}

}  // namespace stimloop::bench
