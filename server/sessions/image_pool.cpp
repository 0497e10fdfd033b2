// Loading an image pool (a directory or a zip of PNG/JPEG files) into memory, once, at startup.
// Everything read is size-capped before it is read and image dimensions are checked from the file
// header before decoding, so a hostile pool fails with RESOURCE_EXHAUSTED instead of exhausting
// memory.
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "common/truncate.h"
#include "server/sessions/image_pool.h"

namespace stimloop::sessions {
namespace {

namespace fs = std::filesystem;

// Names come from the pool, possibly from an attacker: echo at most this much of one.
std::string shown(const std::string& name) {
  std::string out(1, '\'');
  out += truncated_id(name, 200);
  return out + "'";
}

Status permission_denied(std::string message) {
  return {StatusCode::kPermissionDenied, std::move(message)};
}

bool has_image_extension(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return false;
  std::string ext = name.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "png" || ext == "jpg" || ext == "jpeg";
}

// "image2" < "image10": runs of digits compare by value (then by length, so "01" and "1" still
// have an order), everything else byte by byte.
bool natural_less(const std::string& a, const std::string& b) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      std::size_t ie = i, je = j;
      while (ie < a.size() && digit(a[ie])) ++ie;
      while (je < b.size() && digit(b[je])) ++je;
      std::size_t is = i, js = j;  // skip leading zeros to compare values by length
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      if (const int c = a.compare(is, ie - is, b, js, je - js); c != 0) return c < 0;
      if (ie - i != je - j) return ie - i < je - j;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

std::uint32_t big_endian(const std::vector<std::uint8_t>& b, std::size_t at, int bytes) {
  std::uint32_t v = 0;
  for (int k = 0; k < bytes; ++k) v = (v << 8) | b[at + k];
  return v;
}

// Width and height from a PNG's IHDR or a JPEG's first SOF marker, without decoding; nullopt
// when the header is not recognised (the decoder then has the last word).
std::optional<std::pair<std::uint32_t, std::uint32_t>> header_size(
    const std::vector<std::uint8_t>& b) {
  static const std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 24 && std::equal(kPng, kPng + 8, b.begin())) {
    return std::make_pair(big_endian(b, 16, 4), big_endian(b, 20, 4));
  }
  if (b.size() < 4 || b[0] != 0xFF || b[1] != 0xD8) return std::nullopt;
  std::size_t at = 2;
  while (at + 4 <= b.size()) {
    if (b[at] != 0xFF) return std::nullopt;
    const std::uint8_t marker = b[at + 1];
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      at += 2;  // markers without a length
      continue;
    }
    const std::size_t length = big_endian(b, at + 2, 2);
    const bool sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof && at + 9 <= b.size()) {
      return std::make_pair(big_endian(b, at + 7, 2), big_endian(b, at + 5, 2));
    }
    if (marker == 0xDA || length < 2) return std::nullopt;  // scan data before any frame
    at += 2 + length;
  }
  return std::nullopt;
}

struct Source {
  std::string name;        // base name, as the pool reports it
  std::string where;       // the file name in the directory, or the full zip member name
  zip_uint64_t index = 0;  // zip member index (unused for directories)
};

StatusOr<std::vector<std::uint8_t>> read_file(const std::string& dir, const Source& s,
                                              const PoolLimits& limits) {
  const std::string file = (fs::path(dir) / s.where).string();
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) return invalid_argument("cannot stat " + shown(s.where) + ": " + ec.message());
  if (size > static_cast<std::uintmax_t>(limits.max_file_bytes)) {
    return resource_exhausted(shown(s.where) + " is " + std::to_string(size) +
                              " bytes, more than the limit of " +
                              std::to_string(limits.max_file_bytes));
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.c_str(), "rb"), &std::fclose);
  if (!f) {
    const int err = errno;
    const std::string why = shown(s.where) + ": " + std::generic_category().message(err);
    if (err == EACCES || err == EPERM) return permission_denied("cannot read " + why);
    return invalid_argument("cannot open " + why);
  }
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  // One byte more than the size asked for: a file that grew since the stat is caught too.
  std::uint8_t extra;
  if (std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size() ||
      std::fread(&extra, 1, 1, f.get()) != 0) {
    return invalid_argument("short or changing read of " + shown(s.where));
  }
  return bytes;
}

// The declared size is capped before anything is allocated; libzip checks the CRC when a member
// is read to its end, which the extra one-byte read guarantees.
StatusOr<std::vector<std::uint8_t>> read_member(zip_t* zip, const Source& s,
                                                const PoolLimits& limits) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(zip, s.index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
    return invalid_argument("cannot read member " + shown(s.where) + ": " + zip_strerror(zip));
  }
  if (st.size > static_cast<zip_uint64_t>(limits.max_file_bytes)) {
    return resource_exhausted("member " + shown(s.where) + " is " + std::to_string(st.size) +
                              " bytes, more than the limit of " +
                              std::to_string(limits.max_file_bytes));
  }
  const zip_uint64_t size = st.size;
  std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> f(zip_fopen_index(zip, s.index, 0),
                                                      &zip_fclose);
  if (!f)
    return invalid_argument("cannot open member " + shown(s.where) + ": " + zip_strerror(zip));
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  std::size_t got = 0;
  while (got < bytes.size()) {
    const zip_int64_t n = zip_fread(f.get(), bytes.data() + got, bytes.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  std::uint8_t extra;
  if (got != bytes.size() || zip_fread(f.get(), &extra, 1) != 0) {
    return invalid_argument("corrupt zip member " + shown(s.where) + ": " +
                            zip_error_strerror(zip_file_get_error(f.get())));
  }
  return bytes;
}

StatusOr<std::vector<Source>> list_directory(const std::string& path, const PoolLimits& limits) {
  std::vector<Source> sources;
  std::error_code ec;
  fs::directory_iterator it(path, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    const std::string name = it->path().filename().string();
    if (!it->is_regular_file(type_ec) || !has_image_extension(name)) continue;
    sources.push_back({name, name});
    if (static_cast<int>(sources.size()) > limits.max_images) break;  // the caller reports it
  }
  if (ec == std::errc::permission_denied) {
    return permission_denied("cannot list the directory: " + ec.message());
  }
  if (ec) return invalid_argument("cannot list the directory: " + ec.message());
  return sources;
}

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};

StatusOr<std::unique_ptr<zip_t, ZipCloser>> open_zip(const std::string& path) {
  int code = 0;
  std::unique_ptr<zip_t, ZipCloser> zip(zip_open(path.c_str(), ZIP_RDONLY, &code));
  if (zip) return zip;
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  const std::string why = zip_error_strerror(&error);
  const int system = zip_error_code_system(&error);
  zip_error_fini(&error);
  if (code == ZIP_ER_OPEN && (system == EACCES || system == EPERM)) {
    return permission_denied("cannot read it: " + why);
  }
  return invalid_argument("neither a directory nor a readable zip: " + why);
}

StatusOr<std::vector<Source>> list_zip(zip_t* zip, const PoolLimits& limits) {
  std::vector<Source> sources;
  std::map<std::string, std::string> seen;  // base name -> first member holding it
  const zip_int64_t entries = zip_get_num_entries(zip, 0);
  for (zip_int64_t i = 0; i < entries; ++i) {
    const char* raw = zip_get_name(zip, static_cast<zip_uint64_t>(i), 0);
    if (raw == nullptr) continue;
    const std::string member = raw;
    // Folders, and the resource forks macOS's archiver adds under __MACOSX/, are not images.
    if (member.empty() || member.back() == '/' || member.rfind("__MACOSX/", 0) == 0 ||
        member.find("/__MACOSX/") != std::string::npos) {
      continue;
    }
    const std::string base = member.substr(member.rfind('/') + 1);
    if (!has_image_extension(base)) continue;
    if (auto [at, fresh] = seen.emplace(base, member); !fresh) {
      return invalid_argument("two zip members have the base name " + shown(base) + ": " +
                              shown(at->second) + " and " + shown(member));
    }
    sources.push_back({base, member, static_cast<zip_uint64_t>(i)});
    if (static_cast<int>(sources.size()) > limits.max_images) break;  // the caller reports it
  }
  return sources;
}

}  // namespace

StatusOr<ImagePool> load_image_pool(const std::string& name, const std::string& path,
                                    const PoolLimits& limits) {
  ImagePool pool{name, path, {}};
  const std::string context = "image pool " + shown(name) + " at " + shown(path);
  std::error_code ec;
  const auto type = fs::status(path, ec).type();
  if (type == fs::file_type::not_found) {
    return not_found(context + ": no such file or directory");
  }
  if (ec == std::errc::permission_denied) {
    return permission_denied(context + ": " + ec.message());
  }
  if (ec) return invalid_argument(context + ": " + ec.message());

  std::unique_ptr<zip_t, ZipCloser> zip;
  std::vector<Source> sources;
  if (type == fs::file_type::directory) {
    auto listed = list_directory(path, limits);
    if (!listed.ok()) return listed.status().with_context(context);
    sources = std::move(*listed);
  } else if (type == fs::file_type::regular) {
    auto opened = open_zip(path);
    if (!opened.ok()) return opened.status().with_context(context);
    zip = std::move(*opened);
    auto listed = list_zip(zip.get(), limits);
    if (!listed.ok()) return listed.status().with_context(context);
    sources = std::move(*listed);
  } else {
    return invalid_argument(context + ": neither a directory nor a zip");
  }
  if (sources.empty()) {
    return invalid_argument(context + ": holds no .png/.jpg/.jpeg images");
  }
  if (static_cast<int>(sources.size()) > limits.max_images) {
    return resource_exhausted(context + ": holds more than " + std::to_string(limits.max_images) +
                              " images");
  }
  std::sort(sources.begin(), sources.end(),
            [](const Source& a, const Source& b) { return natural_less(a.name, b.name); });

  for (const Source& s : sources) {
    auto bytes = zip ? read_member(zip.get(), s, limits) : read_file(path, s, limits);
    if (!bytes.ok()) return bytes.status().with_context(context);
    if (auto size = header_size(*bytes);
        size && (size->first > static_cast<std::uint32_t>(limits.max_side) ||
                 size->second > static_cast<std::uint32_t>(limits.max_side))) {
      return resource_exhausted(context + ": " + shown(s.where) + " is " +
                                std::to_string(size->first) + "x" + std::to_string(size->second) +
                                ", larger than " + std::to_string(limits.max_side) + " a side");
    }
    auto image = decode_image(*bytes);
    if (!image.ok()) {
      return invalid_argument(context + ": " + shown(s.where) + ": " + image.status().message());
    }
    if (image->width > limits.max_side || image->height > limits.max_side) {
      return resource_exhausted(context + ": " + shown(s.where) + " is larger than " +
                                std::to_string(limits.max_side) + " pixels a side");
    }
    if (!pool.images.empty() && (image->width != pool.images[0].image.width ||
                                 image->height != pool.images[0].image.height)) {
      const Rgb8Image& first = pool.images[0].image;
      return invalid_argument(context + ": " + shown(s.where) + " is " +
                              std::to_string(image->width) + "x" + std::to_string(image->height) +
                              " but " + shown(pool.images[0].name) + " is " +
                              std::to_string(first.width) + "x" + std::to_string(first.height) +
                              "; every image of a pool must have the same size");
    }
    pool.images.push_back({s.name, std::move(*image)});
  }
  return pool;
}

}  // namespace stimloop::sessions
