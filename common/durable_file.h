// Writing files so that nothing torn is ever seen under a final name: bytes go to a temporary
// name beside the target (".<name>.tmp-<pid>-<n>", obviously temporary), are fsynced, then
// renamed into place and the directory is fsynced. A process killed at any moment leaves the old
// file, the new one whole, or a temporary; a full disk is an error, never a short file. Every
// writer of stimloop's outputs (results directory, CLI outputs, session images, exports) uses
// this one implementation.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace stimloop {

// `what: strerror(err)` with the code that says what went wrong: PERMISSION_DENIED (EACCES,
// EPERM, EROFS), RESOURCE_EXHAUSTED (full disk or quota, file size limit), NOT_FOUND (ENOENT),
// FAILED_PRECONDITION (a directory where a file belongs, or the reverse), UNAVAILABLE (EIO),
// else INTERNAL.
Status errno_status(int err, const std::string& what);

// fsync of a file or of a directory (a rename or a new name is durable only once the directory
// holding it is synced).
Status sync_path(const std::string& path);

// Creates or truncates `path`, writes `bytes` and fsyncs them. Not atomic: for files inside a
// directory that is itself renamed into place once complete.
Status write_file_synced(const std::string& path, std::span<const std::uint8_t> bytes);

// A file written and synced under a temporary name, waiting to be given its final name. The
// temporary is removed unless commit() succeeded.
class PendingFile {
 public:
  // Writes and syncs `bytes` to a temporary beside `path`.
  static StatusOr<PendingFile> write(const std::string& path, std::span<const std::uint8_t> bytes);

  PendingFile(PendingFile&& other) noexcept;
  PendingFile& operator=(PendingFile&& other) noexcept;
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  ~PendingFile();

  const std::string& path() const { return path_; }
  // Renames the temporary over path() (the directory is not synced: see sync_path).
  Status commit();
  // Renames the temporary to `path` unless a file of that name exists: false then, and the
  // temporary stays for another try.
  StatusOr<bool> commit_if_absent(const std::string& path);

 private:
  PendingFile(std::string path, std::string temp)
      : path_(std::move(path)), temp_(std::move(temp)) {}
  void discard();

  std::string path_, temp_;
};

// PendingFile::write + commit + sync of the directory.
Status write_file_atomically(const std::string& path, std::span<const std::uint8_t> bytes);
inline Status write_file_atomically(const std::string& path, const std::string& text) {
  return write_file_atomically(
      path, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

// Whether a file name is one of PendingFile's temporaries (what a killed writer leaves behind).
bool is_temporary_name(const std::string& filename);

// The directory holding `path` ("." for a bare name).
std::string parent_directory(const std::string& path);

}  // namespace stimloop
