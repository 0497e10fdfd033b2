// One stimulus of a block as the strategies make it, before the store gives it an id.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stimloop::sessions {

struct BlockItem {
  std::string origin;  // "pool", "synthesized", "reference"
  std::string source_json;
  std::vector<std::uint8_t> pixels;  // the model's input size, RGB
  std::vector<std::uint8_t> png;
  int pool_index = -1;         // pool and reference items: the image's index in the pool
  bool stopped_early = false;  // a synthesis that stopped at the deadline
  // Synthesized items: every channel's prediction, from the synthesis's own final evaluation on
  // the session model (pool items are predicted from their features by the caller).
  std::vector<double> predicted;
  // Synthesized items prepared in the background before the block was asked for: the fit version
  // of the model they were synthesized on.
  bool prepared = false;
  int prepared_fit_version = 0;
};

}  // namespace stimloop::sessions
