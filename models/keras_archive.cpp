#include "models/keras_archive.h"

#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>

#include "common/durable_file.h"
#include "common/file_checks.h"
#include "common/sha256.h"

namespace stimloop {
namespace {

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

StatusOr<std::vector<std::uint8_t>> read_file_bytes(const std::string& path,
                                                    std::int64_t max_bytes) {
  // Only regular files: a directory has no meaningful size, and opening a FIFO would block.
  // An unreadable file is a permission problem, not a missing one.
  RETURN_IF_ERROR(check_readable_file(path, "model file"));
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return errno_status(errno, "cannot open model file");
  const std::streamoff size = in.tellg();
  if (size < 0) return data_loss("cannot read model file size");
  if (size == 0) return data_loss("model file is empty (0 bytes)");
  if (size > max_bytes) {
    return resource_exhausted("model file is " + std::to_string(size) + " bytes, more than the " +
                              std::to_string(max_bytes) + "-byte limit");
  }
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    return data_loss("short read of model file");
  }
  return bytes;
}

// Reads one member, trusting neither the declared size (capped) nor the data (CRC checked by
// libzip when the member is read to its end).
StatusOr<std::vector<std::uint8_t>> read_member(zip_t* archive, const char* member,
                                                std::int64_t max_bytes) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(archive, member, 0, &st) != 0) {
    return data_loss(std::string("archive has no ") + member);
  }
  if (!(st.valid & ZIP_STAT_SIZE)) return data_loss(std::string(member) + ": size unknown");
  if (st.size > static_cast<zip_uint64_t>(max_bytes)) {
    return resource_exhausted(std::string(member) + " is " + std::to_string(st.size) +
                              " bytes uncompressed, more than the limit of " +
                              std::to_string(max_bytes));
  }
  std::unique_ptr<zip_file_t, ZipFileCloser> file(zip_fopen(archive, member, 0));
  if (!file) {
    return data_loss(std::string("cannot open ") + member + ": " + zip_strerror(archive));
  }
  // The buffer grows with the data that actually arrives, so a header declaring far more than
  // the member holds costs no more memory than the data behind it.
  const auto declared = static_cast<std::size_t>(st.size);
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  std::vector<std::uint8_t> data;
  data.reserve(std::min(declared, 16 * kChunk));
  while (data.size() < declared) {
    const std::size_t got = data.size();
    data.resize(got + std::min(kChunk, declared - got));
    const zip_int64_t n = zip_fread(file.get(), data.data() + got, data.size() - got);
    if (n < 0) {
      return data_loss(std::string("corrupt ") + member + ": " +
                       zip_error_strerror(zip_file_get_error(file.get())));
    }
    data.resize(got + static_cast<std::size_t>(n));
    if (n == 0) break;
  }
  if (data.size() != declared) {
    return data_loss(std::string(member) + " is truncated (" + std::to_string(data.size()) +
                     " of " + std::to_string(declared) + " bytes)");
  }
  // Reading past the end lets libzip verify the CRC. More data than declared (a corrupt
  // compressed stream can decode to that) is corruption too, and libzip checks no CRC then.
  std::uint8_t extra;
  const zip_int64_t n = zip_fread(file.get(), &extra, 1);
  if (n < 0) {
    return data_loss(std::string("corrupt ") + member + ": " +
                     zip_error_strerror(zip_file_get_error(file.get())));
  }
  if (n > 0) {
    return data_loss(std::string("corrupt ") + member + ": holds more than its declared " +
                     std::to_string(declared) + " bytes");
  }
  return data;
}

}  // namespace

StatusOr<KerasArchive> read_keras_archive(const std::string& path, const ImportLimits& limits) {
  ASSIGN_OR_RETURN(std::vector<std::uint8_t> bytes, read_file_bytes(path, limits.max_file_bytes));
  KerasArchive archive;
  archive.sha256 = sha256_hex(bytes);

  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (source == nullptr) {
    std::string message = zip_error_strerror(&error);
    zip_error_fini(&error);
    return internal_error("cannot wrap model file for unzip: " + message);
  }
  std::unique_ptr<zip_t, ZipCloser> zip(zip_open_from_source(source, ZIP_RDONLY, &error));
  if (!zip) {
    zip_source_free(source);
    std::string message = zip_error_strerror(&error);
    zip_error_fini(&error);
    return data_loss("not a valid .keras (zip) archive: " + message);
  }
  zip_error_fini(&error);

  ASSIGN_OR_RETURN(auto config, read_member(zip.get(), "config.json", limits.max_config_bytes));
  archive.config_json.assign(config.begin(), config.end());
  ASSIGN_OR_RETURN(archive.weights_h5,
                   read_member(zip.get(), "model.weights.h5", limits.max_weights_bytes));
  return archive;
}

}  // namespace stimloop
