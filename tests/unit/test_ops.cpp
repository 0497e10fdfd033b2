// Every CPU op, forward and backward-to-input, against the double-precision reference on
// deliberately odd shapes: sizes that are not multiples of anything, strides that skip input
// rows, 'valid' windows that never read the last rows, kernels larger than the image,
// rectangular kernels and strides, and the two pointwise paths (general and one output channel).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/layer_params.h"
#include "tests/support/reference_network.h"
#include "tests/unit/op_cases.h"

namespace stimloop {

using test::compare_close;
using test::kCases;
using test::kRtol;
using test::OpCase;
using test::random_floats;
using test::to_double;

TEST_CASE("TensorFlow padding geometry", "[ops]") {
  // Values as TensorFlow computes them: out = ceil(in / s), pad_total = max((out-1)*s + k - in, 0),
  // pad_before = pad_total / 2, any odd extra pixel after.
  CHECK(same_padding(112, 5, 2).out == 56);
  CHECK(same_padding(112, 5, 2).pad_before == 1);  // (1, 2): docs/domain.md
  CHECK(same_padding(112, 5, 1).out == 112);
  CHECK(same_padding(112, 5, 1).pad_before == 2);
  CHECK(same_padding(17, 5, 2).out == 9);
  CHECK(same_padding(17, 5, 2).pad_before == 2);  // total 4
  CHECK(same_padding(23, 3, 2).out == 12);
  CHECK(same_padding(23, 3, 2).pad_before == 1);  // total 2
  CHECK(same_padding(4, 3, 2).out == 2);
  CHECK(same_padding(4, 3, 2).pad_before == 0);  // total 1: all of it after
  CHECK(same_padding(3, 5, 2).out == 2);
  CHECK(same_padding(3, 5, 2).pad_before == 2);  // total 4
  CHECK(same_padding(7, 1, 3).out == 3);
  CHECK(same_padding(7, 1, 3).pad_before == 0);
  CHECK(valid_padding(28, 28, 1).out == 1);
  CHECK(valid_padding(17, 5, 2).out == 7);
  CHECK(valid_padding(17, 4, 3).out == 5);
  CHECK(valid_padding(3, 5, 1).out == 0);
  CHECK(valid_padding(17, 5, 2).pad_before == 0);
}

TEST_CASE("CPU ops forward matches the double reference", "[ops]") {
  const OpCase& c = GENERATE(from_range(std::begin(kCases), std::end(kCases)));
  const int n = GENERATE(1, 3);
  // Bias and ReLU only touch the forward pass; two combinations cover both on and off.
  const bool bias = GENERATE(true, false);
  const bool relu = !bias;
  const LayerParams p = test::make_params(c, bias, relu);
  CAPTURE(c.label, n, bias, relu, p.out_h, p.out_w, p.pad_top, p.pad_left);
  REQUIRE(p.out_h > 0);
  REQUIRE(p.out_w > 0);

  std::mt19937 rng(1234u + static_cast<unsigned>(p.in_size() * 7 + p.out_size()));
  const double a = std::sqrt(3.0 / test::forward_terms(p));
  const auto in = random_floats(n * p.in_size(), -1, 1, rng);
  const auto w = random_floats(p.weight_count(), -a, a, rng);
  const auto b = bias ? random_floats(p.out_c, -0.5, 0.5, rng) : std::vector<float>{};

  // Start from NaN so an output the kernel never writes shows up as non-finite.
  std::vector<float> out(n * p.out_size(), std::numeric_limits<float>::quiet_NaN());
  cpu::layer_forward(p, n, in.data(), w.data(), bias ? b.data() : nullptr, out.data());
  const auto ref = test::ref_layer_forward(p, n, to_double(in), to_double(w), to_double(b));
  const auto report = compare_close(out, ref, test::atol_for(test::forward_terms(p)), kRtol);
  INFO(report.describe());
  CHECK(report.non_finite == 0);
  CHECK(report.ok());
  // The fused ReLU must give exact zeros, never -0.0f-like negatives or tiny negatives.
  CHECK(std::none_of(out.begin(), out.end(), [&](float v) { return relu && v < 0.0f; }));
}

TEST_CASE("CPU ops backward to input matches the double reference", "[ops]") {
  const OpCase& c = GENERATE(from_range(std::begin(kCases), std::end(kCases)));
  const int n = GENERATE(1, 3);
  const LayerParams p = test::make_params(c, true, true);  // the fused ReLU is the caller's to mask
  CAPTURE(c.label, n, p.out_h, p.out_w, p.pad_top, p.pad_left);
  REQUIRE(p.out_h > 0);
  REQUIRE(p.out_w > 0);

  std::mt19937 rng(4321u + static_cast<unsigned>(p.in_size() * 7 + p.out_size()));
  const double a = std::sqrt(3.0 / test::forward_terms(p));
  const auto w = random_floats(p.weight_count(), -a, a, rng);
  const auto d_out = random_floats(n * p.out_size(), -1, 1, rng);

  // d_in is overwritten, whatever it held before.
  std::vector<float> d_in(n * p.in_size(), std::numeric_limits<float>::quiet_NaN());
  cpu::layer_backward_input(p, n, d_out.data(), w.data(), d_in.data());
  const auto ref = test::ref_layer_backward_input(p, n, to_double(d_out), to_double(w));
  const auto report = compare_close(d_in, ref, test::atol_for(test::backward_terms(p)), kRtol);
  INFO(report.describe());
  CHECK(report.non_finite == 0);
  CHECK(report.ok());
}

TEST_CASE("CPU ops: batch images are independent", "[ops]") {
  // Image 1 of a batch of 3 gives bitwise the same result as the image alone: every element is
  // computed by one thread in a fixed order, whatever the batch around it.
  const OpCase& c = GENERATE(from_range(std::begin(kCases), std::end(kCases)));
  const LayerParams p = test::make_params(c, true, true);
  CAPTURE(c.label);
  std::mt19937 rng(99);
  const double a = std::sqrt(3.0 / test::forward_terms(p));
  const auto in = random_floats(3 * p.in_size(), -1, 1, rng);
  const auto w = random_floats(p.weight_count(), -a, a, rng);
  const auto b = random_floats(p.out_c, -0.5, 0.5, rng);
  const auto d_out = random_floats(3 * p.out_size(), -1, 1, rng);

  std::vector<float> out3(3 * p.out_size()), out1(p.out_size());
  cpu::layer_forward(p, 3, in.data(), w.data(), b.data(), out3.data());
  cpu::layer_forward(p, 1, in.data() + p.in_size(), w.data(), b.data(), out1.data());
  CHECK(test::first_bitwise_difference(out1, std::span(out3).subspan(p.out_size(), p.out_size())) ==
        -1);

  std::vector<float> d3(3 * p.in_size()), d1(p.in_size());
  cpu::layer_backward_input(p, 3, d_out.data(), w.data(), d3.data());
  cpu::layer_backward_input(p, 1, d_out.data() + p.out_size(), w.data(), d1.data());
  CHECK(test::first_bitwise_difference(d1, std::span(d3).subspan(p.in_size(), p.in_size())) == -1);
}

}  // namespace stimloop
