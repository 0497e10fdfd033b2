// Small file helpers for tests of what stimloop writes: a file's contents, a directory's names,
// and a file size limit that stands in for a full disk (no root needed to mount a small tmpfs).
#pragma once

#include <sys/resource.h>

#include <string>
#include <vector>

namespace stimloop::test {

// The whole file ("" when it cannot be read).
std::string read_file_text(const std::string& path);
// The names in `dir`, sorted.
std::vector<std::string> names_in(const std::string& dir);

// For one scope, writes past `bytes` fail with EFBIG (RESOURCE_EXHAUSTED, like ENOSPC) in this
// whole process; SIGXFSZ is ignored so that the write fails instead of killing it.
class ScopedFileSizeLimit {
 public:
  explicit ScopedFileSizeLimit(rlim_t bytes);
  ~ScopedFileSizeLimit();
  ScopedFileSizeLimit(const ScopedFileSizeLimit&) = delete;
  ScopedFileSizeLimit& operator=(const ScopedFileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*saved_handler_)(int) = nullptr;
};

}  // namespace stimloop::test
