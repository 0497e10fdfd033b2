// The F(4, 5) transform tables (kernels/cpu/winograd_f4x5.h) against the correlation they stand
// for, in double: a wrong entry anywhere shows as an error of order one. And the factored input
// and output transforms the layer-0 kernel evaluates (winograd_forward.h) against the tables, on a
// one-lane float type.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "kernels/cpu/winograd_f4x5.h"
#include "kernels/cpu/winograd_forward.h"

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

// The lane type of winograd_forward.h with one float lane (what the transforms use of it).
struct ScalarLanes {
  using V = float;
  static V set1(float x) { return x; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
};

// max |factored - table| over `rows` outputs of a table applied to x, relative to the largest
// term of each row (float rounding: ~1e-7).
template <int Rows, int Cols>
double worst_relative(const double (&table)[Rows][Cols], const float* x, const float* factored) {
  double worst = 0;
  for (int r = 0; r < Rows; ++r) {
    double exact = 0, scale = 1e-30;
    for (int c = 0; c < Cols; ++c) {
      exact += table[r][c] * x[c];
      scale = std::max(scale, std::abs(table[r][c] * x[c]));
    }
    worst = std::max(worst, std::abs(factored[r] - exact) / scale);
  }
  return worst;
}

TEST_CASE("Winograd F(4,5) factored transforms equal the tables", "[ops][winograd]") {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int trial = 0; trial < 100; ++trial) {
    float d[wg::kPoints], v[wg::kPoints], y[wg::kOutputs];
    for (float& x : d) x = dist(rng);
    cpu::winograd::input_transform<ScalarLanes>(d, v);
    cpu::winograd::output_transform<ScalarLanes>(d, y);
    CAPTURE(trial);
    CHECK(worst_relative(wg::kInputTransform, d, v) < 1e-5);
    CHECK(worst_relative(wg::kOutputTransform, d, y) < 1e-5);
  }
}

}  // namespace
}  // namespace stimloop
