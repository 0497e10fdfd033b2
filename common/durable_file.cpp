#include "common/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace stimloop {
namespace {

Status write_all(int fd, std::span<const std::uint8_t> bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status(errno, "cannot write " + path);
    if (n == 0) return errno_status(ENOSPC, "cannot write " + path);
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

// Writes, syncs and closes `path`; the file is left in place whatever happens. Errors name
// `target`, the file the caller means to produce.
Status write_to(const std::string& path, int flags, std::span<const std::uint8_t> bytes,
                const std::string& target) {
  const int fd = ::open(path.c_str(), flags | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return errno_status(errno, "cannot create " + target);
  Status status = write_all(fd, bytes, target);
  if (status.ok() && ::fsync(fd) != 0) status = errno_status(errno, "cannot sync " + target);
  if (::close(fd) != 0 && status.ok()) status = errno_status(errno, "cannot close " + target);
  return status;
}

std::string temporary_name(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  const std::filesystem::path p(path);
  std::string name(1, '.');
  name += p.filename().string();
  name += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  return p.has_parent_path() ? (p.parent_path() / name).string() : name;
}

}  // namespace

Status errno_status(int err, const std::string& what) {
  StatusCode code = StatusCode::kInternal;
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      code = StatusCode::kPermissionDenied;
      break;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      code = StatusCode::kResourceExhausted;
      break;
    case ENOENT:
      code = StatusCode::kNotFound;
      break;
    case ENOTDIR:
    case EISDIR:
    case EEXIST:
    case ENOTEMPTY:
      code = StatusCode::kFailedPrecondition;
      break;
    case EIO:
      code = StatusCode::kUnavailable;
      break;
    default:
      break;
  }
  return {code, what + ": " + std::strerror(err)};
}

bool is_temporary_name(const std::string& filename) {
  return filename.size() > 1 && filename[0] == '.' && filename.find(".tmp-") != std::string::npos;
}

std::string parent_directory(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

Status sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status(errno, "cannot open " + path + " to sync it");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return errno_status(err, "cannot sync " + path);
  return Status::Ok();
}

Status write_file_synced(const std::string& path, std::span<const std::uint8_t> bytes) {
  return write_to(path, O_CREAT | O_TRUNC, bytes, path);
}

StatusOr<PendingFile> PendingFile::write(const std::string& path,
                                         std::span<const std::uint8_t> bytes) {
  std::string temp = temporary_name(path);
  if (Status status = write_to(temp, O_CREAT | O_EXCL, bytes, path); !status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  return PendingFile(path, std::move(temp));
}

PendingFile::PendingFile(PendingFile&& other) noexcept
    : path_(std::move(other.path_)), temp_(std::move(other.temp_)) {
  other.temp_.clear();
}

PendingFile& PendingFile::operator=(PendingFile&& other) noexcept {
  if (this != &other) {
    discard();
    path_ = std::move(other.path_);
    temp_ = std::move(other.temp_);
    other.temp_.clear();
  }
  return *this;
}

PendingFile::~PendingFile() { discard(); }

void PendingFile::discard() {
  if (!temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
}

Status PendingFile::commit() {
  if (temp_.empty()) return failed_precondition(path_ + ": already committed");
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) {
    return errno_status(errno, "cannot rename " + temp_ + " to " + path_);
  }
  temp_.clear();
  return Status::Ok();
}

StatusOr<bool> PendingFile::commit_if_absent(const std::string& path) {
  if (temp_.empty()) return failed_precondition(path + ": already committed");
  // link(2) never replaces an existing name, on every file system (renameat2's
  // RENAME_NOREPLACE is missing on some).
  if (::link(temp_.c_str(), path.c_str()) != 0) {
    if (errno == EEXIST) return false;
    return errno_status(errno, "cannot name " + temp_ + " " + path);
  }
  ::unlink(temp_.c_str());
  temp_.clear();
  path_ = path;
  return true;
}

Status write_file_atomically(const std::string& path, std::span<const std::uint8_t> bytes) {
  ASSIGN_OR_RETURN(PendingFile file, PendingFile::write(path, bytes));
  RETURN_IF_ERROR(file.commit());
  return sync_path(parent_directory(path));
}

}  // namespace stimloop
