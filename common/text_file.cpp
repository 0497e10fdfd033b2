#include "common/text_file.h"

#include <fstream>
#include <sstream>

namespace stimloop {

StatusOr<std::string> read_text_file(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(flag + ": cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace stimloop
