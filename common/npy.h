// Minimal NumPy .npy (format 1.0/2.0) reading and writing: little-endian float32, float64 and
// uint8 arrays in C order, which is all stimloop exchanges (gradients, golden data, responses).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace stimloop {

enum class NpyDtype { kFloat32, kFloat64, kUint8 };

struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> data;  // raw little-endian elements, C order

  std::int64_t element_count() const;
  // Converts any supported dtype to double / float for convenient access.
  std::vector<double> to_double() const;
  std::vector<float> to_float() const;
};

StatusOr<NpyArray> read_npy(const std::string& path);
Status write_npy_float32(const std::string& path, const std::vector<std::int64_t>& shape,
                         const float* values);
Status write_npy_float64(const std::string& path, const std::vector<std::int64_t>& shape,
                         const double* values);

}  // namespace stimloop
