#include "common/npy.h"

#include "common/durable_file.h"

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

namespace stimloop {
namespace {

constexpr std::int64_t kMaxNpyBytes = std::int64_t{1} << 32;  // 4 GiB: far above any golden file

std::size_t dtype_size(NpyDtype d) {
  switch (d) {
    case NpyDtype::kFloat32:
      return 4;
    case NpyDtype::kFloat64:
      return 8;
    case NpyDtype::kUint8:
      return 1;
  }
  return 1;
}

// Header (format 1.0) and data of a C-order array of `element_size`-byte elements.
Status write_npy_bytes(const std::string& path, const char* descr,
                       const std::vector<std::int64_t>& shape, const void* values,
                       std::size_t element_size) {
  std::string dims;
  std::int64_t count = 1;
  for (auto d : shape) {
    dims += std::to_string(d) + ", ";
    count *= d;
  }
  if (shape.size() > 1)
    dims.erase(dims.size() - 2);  // "(a, b)"; a 1-D shape keeps "(a,)"
  else if (!dims.empty())
    dims.erase(dims.size() - 1);
  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so that magic (6) + version (2) + length (2) + header is a multiple of 64, ending in \n.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(len & 0xff);
  bytes += static_cast<char>(len >> 8);
  bytes += header;
  // x86/ARM hosts: little-endian.
  bytes.append(static_cast<const char*>(values), static_cast<std::size_t>(count) * element_size);
  return write_file_atomically(path, bytes);
}

}  // namespace

std::int64_t NpyArray::element_count() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::vector<double> NpyArray::to_double() const {
  const std::int64_t n = element_count();
  std::vector<double> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    switch (dtype) {
      case NpyDtype::kFloat32: {
        float f;
        std::memcpy(&f, data.data() + 4 * i, 4);
        out[i] = f;
        break;
      }
      case NpyDtype::kFloat64:
        std::memcpy(&out[i], data.data() + 8 * i, 8);
        break;
      case NpyDtype::kUint8:
        out[i] = data[i];
        break;
    }
  }
  return out;
}

std::vector<float> NpyArray::to_float() const {
  auto d = to_double();
  return std::vector<float>(d.begin(), d.end());
}

StatusOr<NpyArray> read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + path);
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    return data_loss(path + ": not a .npy file");
  }
  std::uint32_t header_len = 0;
  if (magic[6] == 1) {
    std::uint8_t b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) return data_loss(path + ": truncated header");
    header_len = b[0] | (b[1] << 8);
  } else if (magic[6] == 2 || magic[6] == 3) {
    std::uint8_t b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) return data_loss(path + ": truncated header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  } else {
    return data_loss(path + ": unsupported .npy version");
  }
  if (header_len > (1u << 20)) return data_loss(path + ": .npy header too large");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) return data_loss(path + ": truncated header");

  NpyArray array;
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'"))) {
    return data_loss(path + ": no descr in .npy header");
  }
  const std::string descr = m[1];
  if (descr == "<f4")
    array.dtype = NpyDtype::kFloat32;
  else if (descr == "<f8")
    array.dtype = NpyDtype::kFloat64;
  else if (descr == "|u1" || descr == "<u1")
    array.dtype = NpyDtype::kUint8;
  else
    return unimplemented(path + ": unsupported .npy dtype " + descr);
  if (std::regex_search(header, m, std::regex("'fortran_order':\\s*True"))) {
    return unimplemented(path + ": Fortran-ordered .npy arrays are not supported");
  }
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) {
    return data_loss(path + ": no shape in .npy header");
  }
  std::string dims = m[1];
  std::stringstream ss(dims);
  std::string item;
  std::int64_t bytes = static_cast<std::int64_t>(dtype_size(array.dtype));
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(" ") == std::string::npos) continue;
    std::int64_t d = std::stoll(item);
    if (d < 0 || d > kMaxNpyBytes) return data_loss(path + ": bad .npy dimension");
    array.shape.push_back(d);
    bytes *= d;
    if (bytes > kMaxNpyBytes) return resource_exhausted(path + ": .npy array too large");
  }
  array.data.resize(static_cast<std::size_t>(bytes));
  if (!in.read(reinterpret_cast<char*>(array.data.data()), bytes)) {
    return data_loss(path + ": truncated .npy data");
  }
  return array;
}

Status write_npy_float32(const std::string& path, const std::vector<std::int64_t>& shape,
                         const float* values) {
  return write_npy_bytes(path, "<f4", shape, values, sizeof(float));
}

Status write_npy_float64(const std::string& path, const std::vector<std::int64_t>& shape,
                         const double* values) {
  return write_npy_bytes(path, "<f8", shape, values, sizeof(double));
}

}  // namespace stimloop
