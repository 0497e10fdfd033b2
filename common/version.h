#pragma once

namespace stimloop {

// The project version (CMake's PROJECT_VERSION), recorded in every synthesis record.
inline const char* version() { return STIMLOOP_VERSION; }

}  // namespace stimloop
