// The outer layer of a .keras file: a zip holding config.json and model.weights.h5.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/keras_graph.h"

namespace stimloop {

struct KerasArchive {
  std::string sha256;  // of the file's bytes
  std::string config_json;
  std::vector<std::uint8_t> weights_h5;
};

StatusOr<KerasArchive> read_keras_archive(const std::string& path, const ImportLimits& limits);

}  // namespace stimloop
