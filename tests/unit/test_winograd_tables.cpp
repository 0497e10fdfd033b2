// The F(4, 5) transform tables (kernels/cpu/winograd_f4x5.h) against the correlation they stand
// for, in double: a wrong entry anywhere shows as an error of order one.
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "kernels/cpu/winograd_f4x5.h"

namespace stimloop {
namespace {

namespace wg = cpu::winograd;

TEST_CASE("Winograd F(4,5) tables give the 5-tap correlation of 8 inputs", "[ops][winograd]") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (int trial = 0; trial < 100; ++trial) {
    std::array<double, wg::kPoints> d{};
    std::array<double, wg::kTaps> g{};
    for (double& v : d) v = dist(rng);
    for (double& v : g) v = dist(rng);
    std::array<double, wg::kPoints> product{};
    for (int j = 0; j < wg::kPoints; ++j) {
      double v = 0, u = 0;
      for (int l = 0; l < wg::kPoints; ++l) v += wg::kInputTransform[j][l] * d[l];
      for (int k = 0; k < wg::kTaps; ++k) u += wg::kFilterTransform[j][k] * g[k];
      product[j] = u * v;
    }
    for (int i = 0; i < wg::kOutputs; ++i) {
      double y = 0, direct = 0;
      for (int j = 0; j < wg::kPoints; ++j) y += wg::kOutputTransform[i][j] * product[j];
      for (int k = 0; k < wg::kTaps; ++k) direct += d[i + k] * g[k];
      CAPTURE(trial, i);
      CHECK(std::abs(y - direct) < 1e-12);
    }
  }
}

}  // namespace
}  // namespace stimloop
