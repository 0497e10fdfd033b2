#include "common/file_checks.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>

#include "common/durable_file.h"

namespace stimloop {

Status check_readable_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return not_found(what + " " + path + " does not exist");
    return errno_status(errno, what + " " + path);
  }
  if (S_ISDIR(st.st_mode)) {
    return invalid_argument(what + " " + path + " is a directory, not a file");
  }
  if (!S_ISREG(st.st_mode)) return invalid_argument(what + " " + path + " is not a regular file");
  if (::access(path.c_str(), R_OK) != 0) {
    return errno_status(errno, what + " " + path + " cannot be read");
  }
  return Status::Ok();
}

Status check_writable_file(const std::string& path, const std::string& flag) {
  if (path.empty()) return invalid_argument(flag + ": no path given");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      return failed_precondition(flag + ": " + path + " is a directory, not a file");
    }
    if (::access(path.c_str(), W_OK) != 0) {
      return errno_status(errno, flag + ": " + path + " is not writable");
    }
  }
  const std::string dir = parent_directory(path);
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return not_found(flag + ": directory " + dir + " does not exist");
    return errno_status(errno, flag + ": directory " + dir);
  }
  if (!S_ISDIR(st.st_mode)) return failed_precondition(flag + ": " + dir + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return errno_status(errno, flag + ": cannot create files in " + dir);
  }
  return Status::Ok();
}

bool is_plain_file_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (char ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace stimloop
