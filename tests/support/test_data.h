// Where the published models and golden data live for tests: $STIMLOOP_V4_DATA, else
// ../shared/v4 relative to the source tree. Tests that need them call v4_data_dir() and, when
// it returns nothing, print one clear skip line and return.
#pragma once

#include <optional>
#include <string>

namespace stimloop::test {

// The data directory when it exists (holding golden/README.md), else nullopt.
std::optional<std::string> v4_data_dir();

// Prints "SKIPPED (<what>): published V4 data not found at <dir>; set STIMLOOP_V4_DATA" once per
// test, to stdout, so a run without the data says so plainly.
void print_skip(const std::string& what);

// A fresh empty directory under the build tree for files a test writes.
std::string scratch_dir(const std::string& name);

}  // namespace stimloop::test
