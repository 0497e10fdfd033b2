// Responses and gradients are checked before they leave the process: a model that overflows on
// some input answers an error, never a NaN or infinity (which JSON prints as null).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>

#include "common/status.h"

namespace stimloop {

// INTERNAL "<what>: K of N values are NaN or infinite" when any value is not finite.
template <typename T>
Status check_finite(std::span<const T> values, const std::string& what) {
  std::size_t bad = 0;
  for (T v : values) bad += std::isfinite(v) ? 0 : 1;
  if (bad == 0) return Status::Ok();
  return internal_error(what + ": " + std::to_string(bad) + " of " + std::to_string(values.size()) +
                        " values are NaN or infinite (the model overflows on this input)");
}

}  // namespace stimloop
