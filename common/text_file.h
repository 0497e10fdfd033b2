// Reading a small text file (a PEM certificate, a token file) whole, with an error that names the
// flag it came from.
#pragma once

#include <string>

#include "common/status.h"

namespace stimloop {

// NOT_FOUND "<flag>: cannot read <path>" when it cannot be opened.
StatusOr<std::string> read_text_file(const std::string& path, const std::string& flag);

}  // namespace stimloop
