// The one atomic file writer: a file appears whole under its name or not at all, a failed write
// (a full disk: the file size limit stands in for it) is an error and leaves the old file and no
// temporary, and names are claimed without replacing anyone's file.
#include <catch2/catch.hpp>
#include <filesystem>

#include "common/durable_file.h"
#include "common/file_checks.h"
#include "tests/support/file_helpers.h"
#include "tests/support/test_data.h"

using namespace stimloop;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

std::vector<std::uint8_t> bytes(std::size_t n, std::uint8_t value) {
  return std::vector<std::uint8_t>(n, value);
}

}  // namespace

TEST_CASE("write_file_atomically writes and replaces whole files", "[durable]") {
  const std::string dir = test::scratch_dir("durable_write");
  const std::string path = dir + "/a.bin";
  REQUIRE(write_file_atomically(path, bytes(1000, 1)).ok());
  CHECK(test::read_file_text(path) == std::string(1000, '\1'));
  REQUIRE(write_file_atomically(path, std::string("short")).ok());
  CHECK(test::read_file_text(path) == "short");
  CHECK(test::names_in(dir) == std::vector<std::string>{"a.bin"});
}

TEST_CASE("a write beyond the disk's room fails and leaves the old file", "[durable]") {
  const std::string dir = test::scratch_dir("durable_full");
  const std::string path = dir + "/a.bin";
  REQUIRE(write_file_atomically(path, std::string("old contents")).ok());
  Status status;
  {
    test::ScopedFileSizeLimit full(4096);
    status = write_file_atomically(path, bytes(100000, 7));
  }
  INFO(status.to_string());
  CHECK(status.code() == StatusCode::kResourceExhausted);
  CHECK_THAT(status.message(), Contains(path));
  CHECK(test::read_file_text(path) == "old contents");
  CHECK(test::names_in(dir) == std::vector<std::string>{"a.bin"});
}

TEST_CASE("a pending file is claimed only under a free name, and cleaned up unless committed",
          "[durable]") {
  const std::string dir = test::scratch_dir("durable_claim");
  REQUIRE(write_file_atomically(dir + "/x.png", std::string("first")).ok());
  {
    auto pending = PendingFile::write(dir + "/x.png", bytes(10, 2));
    REQUIRE(pending.ok());
    CHECK(test::names_in(dir).size() == 2);  // x.png and the temporary
    CHECK(is_temporary_name(test::names_in(dir).front()));
    auto taken = pending->commit_if_absent(dir + "/x.png");
    REQUIRE(taken.ok());
    CHECK_FALSE(*taken);
    CHECK(test::read_file_text(dir + "/x.png") == "first");
    auto claimed = pending->commit_if_absent(dir + "/x.2.png");
    REQUIRE(claimed.ok());
    CHECK(*claimed);
  }
  CHECK(test::names_in(dir) == std::vector<std::string>{"x.2.png", "x.png"});
  {
    auto abandoned = PendingFile::write(dir + "/y.png", bytes(10, 3));
    REQUIRE(abandoned.ok());
  }
  CHECK(test::names_in(dir) == std::vector<std::string>{"x.2.png", "x.png"});
}

TEST_CASE("paths are reported as what they are", "[durable]") {
  const std::string dir = test::scratch_dir("durable_checks");
  fs::create_directories(dir + "/sub.png");
  const Status as_output = check_writable_file(dir + "/sub.png", "--out");
  CHECK(as_output.code() == StatusCode::kFailedPrecondition);
  CHECK_THAT(as_output.message(), Contains("is a directory"));
  const Status missing_dir = check_writable_file(dir + "/none/a.png", "--out");
  CHECK(missing_dir.code() == StatusCode::kNotFound);
  const Status as_input = check_readable_file(dir + "/sub.png", "image");
  CHECK(as_input.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(as_input.message(), Contains("image " + dir + "/sub.png is a directory"));
  CHECK(check_readable_file(dir + "/none.png", "image").code() == StatusCode::kNotFound);
  CHECK(errno_status(ENOSPC, "x").code() == StatusCode::kResourceExhausted);
  CHECK(errno_status(EACCES, "x").code() == StatusCode::kPermissionDenied);
  CHECK(errno_status(EROFS, "x").code() == StatusCode::kPermissionDenied);
}

TEST_CASE("is_plain_file_name accepts ids and refuses what could climb out or hide", "[durable]") {
  for (const char* ok : {"block0001-3", "sim-block2-0", "a.b_c", "X"}) {
    CHECK(is_plain_file_name(ok));
  }
  for (const char* bad : {"", "..", "../x", "a/b", ".hidden", "a\\b", "a b", "a\nb"}) {
    INFO(bad);
    CHECK_FALSE(is_plain_file_name(bad));
  }
  CHECK(is_plain_file_name(std::string(64, 'a')));
  CHECK_FALSE(is_plain_file_name(std::string(65, 'a')));
}
