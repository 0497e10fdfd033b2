// Checking a path given on the command line before any work is spent on it, so that the error
// says what the path is (a directory, unreadable, in a read-only directory) instead of the
// NOT_FOUND a failed open would suggest.
#pragma once

#include <string>

#include "common/status.h"

namespace stimloop {

// `path` names a readable regular file (following links). Errors name `what` ("model file",
// "image"): NOT_FOUND when nothing is there (or a link dangles), INVALID_ARGUMENT for a
// directory or other non-file, PERMISSION_DENIED when it cannot be read.
Status check_readable_file(const std::string& path, const std::string& what);

// `path` can be created or replaced as a file: its directory exists and is writable and `path`
// is not a directory. Errors name `flag`: FAILED_PRECONDITION for a directory, NOT_FOUND for a
// missing directory, PERMISSION_DENIED for a read-only one (or a read-only file at `path`).
Status check_writable_file(const std::string& path, const std::string& flag);

// `name` (e.g. an id another program sent) is safe as one file name inside a directory: 1 to 64
// characters of [A-Za-z0-9_.-], not starting with '.', so it can neither climb out nor hide.
bool is_plain_file_name(const std::string& name);

}  // namespace stimloop
