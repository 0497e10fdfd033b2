// Where the benchmark programs find the published models and golden data: $STIMLOOP_V4_DATA
// when set (no fallback then), else ../shared/v4 next to the source tree, else ../shared/v4 from
// the working directory. Empty when none holds `marker` (a file under the data folder).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
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

// The compact models of golden/models_list.txt in file order, as (MACs per image, .keras file);
// rows that do not parse are skipped.
inline std::vector<std::pair<long long, std::string>> compact_model_rows(
    const std::string& data_dir) {
  std::ifstream in(std::filesystem::path(data_dir) / "golden" / "models_list.txt");
  std::vector<std::pair<long long, std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, '\t');) cells.push_back(cell);
    if (cells.size() < 6) continue;
    try {
      rows.emplace_back(std::stoll(cells[5]), cells[3]);
    } catch (const std::exception&) {
      continue;
    }
  }
  return rows;
}

// The .keras file of the compact model with the median MAC count (the lower median: row 110 of
// 219 in MAC order), or empty when there are no rows.
inline std::string median_mac_file(std::vector<std::pair<long long, std::string>> rows) {
  if (rows.empty()) return {};
  std::sort(rows.begin(), rows.end());
  return rows[(rows.size() - 1) / 2].second;
}

}  // namespace stimloop::bench
