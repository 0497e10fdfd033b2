// The per-value arithmetic of the CUDA kernels (kernels/element_ops.h: the straightforward
// kernels and the persistent synthesis step) against the double-precision reference, on the odd
// shapes of the CPU op tests, whole (one worker) and split over 3 and 32 lanes as a warp splits
// it. Compiled for the CPU here, so the GPU's indexing is checked on machines without one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/element_ops.h"
#include "kernels/persistent_step.h"
#include "tests/support/reference_network.h"
#include "tests/unit/op_cases.h"

namespace stimloop {
namespace {

using test::compare_close;
using test::random_floats;
using test::to_double;

// Output value i as a worker split over `lanes` computes it: the lanes' sums added in lane order,
// then the bias (lanes == 1: the plain kernels' order, bias first).
float forward_value(const LayerParams& p, const float* in, const float* w, const float* bias,
                    std::int64_t i, int lanes) {
  if (lanes == 1) {
    return element_ops::activate(
        p, element_ops::forward_sum(p, in, w, i, element_ops::bias_of(p, bias, i)));
  }
  float total = 0.0f;
  for (int lane = 0; lane < lanes; ++lane) {
    total += element_ops::forward_sum(p, in, w, i, 0.0f, lane, lanes);
  }
  return element_ops::activate(p, total + element_ops::bias_of(p, bias, i));
}

float backward_value(const LayerParams& p, const float* d_out, const float* relu_out,
                     const float* w, std::int64_t i, int lanes) {
  float total = 0.0f;
  for (int lane = 0; lane < lanes; ++lane) {
    total += element_ops::backward_sum(p, d_out, relu_out, w, i, lane, lanes);
  }
  return total;
}

}  // namespace

TEST_CASE("Element ops forward matches the double reference", "[ops][cuda-arithmetic]") {
  const test::OpCase& c = GENERATE(from_range(std::begin(test::kCases), std::end(test::kCases)));
  const int n = GENERATE(1, 3);
  const int lanes = GENERATE(1, 3, 32);
  const bool bias = GENERATE(true, false);
  const LayerParams p = test::make_params(c, bias, !bias);
  CAPTURE(c.label, n, lanes, bias);
  std::mt19937 rng(77u + static_cast<unsigned>(p.in_size() * 5 + p.out_size()));
  const double a = std::sqrt(3.0 / test::forward_terms(p));
  const auto in = random_floats(n * p.in_size(), -1, 1, rng);
  const auto w = random_floats(p.weight_count(), -a, a, rng);
  const auto b = bias ? random_floats(p.out_c, -0.5, 0.5, rng) : std::vector<float>{};
  std::vector<float> out(n * p.out_size(), std::numeric_limits<float>::quiet_NaN());
  for (std::int64_t i = 0; i < std::int64_t(out.size()); ++i) {
    out[i] = forward_value(p, in.data(), w.data(), bias ? b.data() : nullptr, i, lanes);
  }
  const auto ref = test::ref_layer_forward(p, n, to_double(in), to_double(w), to_double(b));
  const auto report = compare_close(out, ref, test::atol_for(test::forward_terms(p)), test::kRtol);
  INFO(report.describe());
  CHECK(report.non_finite == 0);
  CHECK(report.ok());
}

TEST_CASE("Element ops backward matches the double reference, with and without the ReLU mask",
          "[ops][cuda-arithmetic]") {
  const test::OpCase& c = GENERATE(from_range(std::begin(test::kCases), std::end(test::kCases)));
  const int n = GENERATE(1, 3);
  const int lanes = GENERATE(1, 3, 32);
  const bool masked = GENERATE(false, true);
  const LayerParams p = test::make_params(c, true, masked);
  CAPTURE(c.label, n, lanes, masked);
  std::mt19937 rng(91u + static_cast<unsigned>(p.in_size() * 5 + p.out_size()));
  const double a = std::sqrt(3.0 / test::forward_terms(p));
  const auto w = random_floats(p.weight_count(), -a, a, rng);
  const auto d_out = random_floats(n * p.out_size(), -1, 1, rng);
  // A ReLU output: zero (masked) at about a third of the values.
  auto relu_out = random_floats(n * p.out_size(), -0.5, 1, rng);
  for (float& v : relu_out) v = std::max(v, 0.0f);
  std::vector<float> d_pre = d_out;
  if (masked) {
    for (std::size_t j = 0; j < d_pre.size(); ++j) d_pre[j] = relu_out[j] > 0 ? d_out[j] : 0.0f;
  }
  std::vector<float> d_in(n * p.in_size(), std::numeric_limits<float>::quiet_NaN());
  for (std::int64_t i = 0; i < std::int64_t(d_in.size()); ++i) {
    d_in[i] =
        backward_value(p, d_out.data(), masked ? relu_out.data() : nullptr, w.data(), i, lanes);
  }
  const auto ref = test::ref_layer_backward_input(p, n, to_double(d_pre), to_double(w));
  const auto report =
      compare_close(d_in, ref, test::atol_for(test::backward_terms(p)), test::kRtol);
  INFO(report.describe());
  CHECK(report.non_finite == 0);
  CHECK(report.ok());
}

}  // namespace stimloop

namespace stimloop {

TEST_CASE("Blocked element ops give the bits of the per-value sums", "[ops][cuda-arithmetic]") {
  // forward_block (8 output channels a worker, on the padded weights) against forward_sum with
  // one lane, and backward_pixel (every input channel of a pixel) against backward_sum lane by
  // lane: the same terms in the same order, so the same bits; forward_sum and backward_sum are
  // checked against the double reference above.
  const test::OpCase& c = GENERATE(from_range(std::begin(test::kCases), std::end(test::kCases)));
  const LayerParams p = test::make_params(c, true, true);
  const bool dense = p.kind != LayerKind::kDepthwise;
  const bool few_inputs = p.kind == LayerKind::kConv2D && p.in_c <= 4;
  if (!dense) return;
  CAPTURE(c.label);
  const int n = 2;
  std::mt19937 rng(5u + static_cast<unsigned>(p.in_size()));
  const auto in = random_floats(n * p.in_size(), -1, 1, rng);
  const auto w = random_floats(p.weight_count(), -0.3, 0.3, rng);
  const auto d_out = random_floats(n * p.out_size(), -1, 1, rng);
  auto relu_out = random_floats(n * p.out_size(), -0.5, 1, rng);
  constexpr int kB = persistent::kChannelBlock;
  const int blocks = (p.out_c + kB - 1) / kB;
  std::vector<float> w_padded(persistent::padded_weight_count(p), -7.0f);
  persistent::pad_weight_rows(p, w.data(), w_padded.data());
  int mismatches = 0;
  const int stride = blocks * kB;
  for (std::size_t k = 0; k < w_padded.size(); ++k) {
    const std::size_t row = k / stride, co = k % stride;
    mismatches += w_padded[k] != (co < std::size_t(p.out_c) ? w[row * p.out_c + co] : 0.0f);
  }
  CHECK(mismatches == 0);
  for (std::int64_t pixel = 0; pixel < std::int64_t{n} * p.out_h * p.out_w; ++pixel) {
    for (int blk = 0; blk < blocks; ++blk) {
      float acc[kB];
      for (int j = 0; j < kB; ++j) acc[j] = 0.25f * j;
      element_ops::forward_block(p, in.data(), w_padded.data(), pixel, blk * kB, acc);
      for (int j = 0; j < kB && blk * kB + j < p.out_c; ++j) {
        const std::int64_t i = pixel * p.out_c + blk * kB + j;
        mismatches += acc[j] != element_ops::forward_sum(p, in.data(), w.data(), i, 0.25f * j);
      }
    }
  }
  CHECK(mismatches == 0);
  if (!few_inputs) return;
  for (const int lanes : {1, 32}) {
    for (std::int64_t pixel = 0; pixel < std::int64_t{n} * p.in_h * p.in_w; ++pixel) {
      for (int lane = 0; lane < lanes; ++lane) {
        float acc[4] = {};
        element_ops::backward_pixel(p, d_out.data(), relu_out.data(), w.data(), pixel, lane, lanes,
                                    acc);
        for (int ci = 0; ci < p.in_c; ++ci) {
          mismatches +=
              acc[ci] != element_ops::backward_sum(p, d_out.data(), relu_out.data(), w.data(),
                                                   pixel * p.in_c + ci, lane, lanes);
        }
      }
    }
  }
  CHECK(mismatches == 0);
}

}  // namespace stimloop

namespace stimloop {

TEST_CASE("Pointwise backward on transposed weights gives the bits of backward_sum",
          "[ops][cuda-arithmetic]") {
  const test::OpCase& c = GENERATE(from_range(std::begin(test::kCases), std::end(test::kCases)));
  const LayerParams p = test::make_params(c, true, true);
  if (p.kind != LayerKind::kPointwise) return;
  CAPTURE(c.label);
  const int n = 2;
  std::mt19937 rng(17u + static_cast<unsigned>(p.in_size()));
  const auto w = random_floats(p.weight_count(), -0.3, 0.3, rng);
  const auto d_out = random_floats(n * p.out_size(), -1, 1, rng);
  const auto relu_out = random_floats(n * p.out_size(), -0.5, 1, rng);
  std::vector<float> w_t(w.size());
  persistent::transpose_pointwise(p, w.data(), w_t.data());
  int mismatches = 0;
  for (const int lanes : {1, 3, 32}) {
    for (std::int64_t i = 0; i < n * p.in_size(); ++i) {
      for (int lane = 0; lane < lanes; ++lane) {
        mismatches +=
            element_ops::pointwise_backward_transposed(p, d_out.data(), relu_out.data(), w_t.data(),
                                                       i, lane, lanes) !=
            element_ops::backward_sum(p, d_out.data(), relu_out.data(), w.data(), i, lane, lanes);
      }
    }
  }
  CHECK(mismatches == 0);
}

}  // namespace stimloop

namespace stimloop {

TEST_CASE("A conv backward split over lanes gives every lane its share of the terms",
          "[ops][cuda-arithmetic]") {
  // Layer 0's backward on the GPU: 32 lanes share 25 taps x out_c terms. With d_out and the
  // weights all 1 and no mask, a lane's sum counts its terms; a split that restarted every tap at
  // channel `lane` gave lanes 0-13 of out_c = 46 two passes a tap (50 terms) and the rest 25.
  // Also checks that the lanes together take every term once.
  const int out_c = GENERATE(1, 15, 32, 46, 57, 70);
  const int lanes = GENERATE(1, 3, 32);
  CAPTURE(out_c, lanes);
  LayerParams p{};
  p.kind = LayerKind::kConv2D;
  p.in_h = p.in_w = 12;
  p.in_c = 3;
  p.k_h = p.k_w = 5;
  p.stride_h = p.stride_w = 1;
  p.pad_top = p.pad_left = 2;
  p.out_h = p.out_w = 12;
  p.out_c = out_c;
  const std::vector<float> ones_out(p.out_size(), 1.0f), ones_w(p.weight_count(), 1.0f);
  const std::int64_t centre = (6 * p.in_w + 6) * p.in_c + 1;  // all 25 taps read it
  float most = 0.0f, fewest = 1e30f, total = 0.0f;
  for (int lane = 0; lane < lanes; ++lane) {
    const float terms =
        element_ops::backward_sum(p, ones_out.data(), nullptr, ones_w.data(), centre, lane, lanes);
    most = std::max(most, terms);
    fewest = std::min(fewest, terms);
    total += terms;
  }
  CHECK(total == 25.0f * out_c);
  CHECK(most - fewest <= 1.0f);
  float pixel_sums[4] = {};
  element_ops::backward_pixel(p, ones_out.data(), nullptr, ones_w.data(), centre / p.in_c,
                              lanes - 1, lanes, pixel_sums);
  CHECK(pixel_sums[1] == element_ops::backward_sum(p, ones_out.data(), nullptr, ones_w.data(),
                                                   centre, lanes - 1, lanes));
}

}  // namespace stimloop

namespace stimloop {

TEST_CASE("Depthwise stride-2 backward by 2 x 2 input blocks gives the bits of the per-value sums",
          "[ops][cuda-arithmetic]") {
  // The persistent step's stride-2 depthwise backward (kQuad items): one window of output
  // gradients for four inputs, each input's terms in its own order. Odd sizes leave blocks with
  // inputs past the edge; 'same' on 16 x 16 pads 1 before; a kernel larger than the image.
  const test::OpCase& c = GENERATE(from_range(std::begin(test::kCases), std::end(test::kCases)));
  const bool relu = GENERATE(false, true);
  const LayerParams p = test::make_params(c, true, relu);
  if (p.kind != LayerKind::kDepthwise || p.stride_h != 2 || p.stride_w != 2) return;
  CAPTURE(c.label, relu);
  const int n = 2;
  std::mt19937 rng(23u + static_cast<unsigned>(p.in_size()));
  const auto w = random_floats(p.weight_count(), -0.3, 0.3, rng);
  const auto d_out = random_floats(n * p.out_size(), -1, 1, rng);
  const auto relu_out = random_floats(n * p.out_size(), -0.5, 1, rng);
  const float* mask = relu ? relu_out.data() : nullptr;
  int mismatches = 0, values = 0;
  for (int b = 0; b < n; ++b) {
    for (int by = 0; by < (p.in_h + 1) / 2; ++by) {
      for (int bx = 0; bx < (p.in_w + 1) / 2; ++bx) {
        for (int ch = 0; ch < p.in_c; ++ch) {
          float acc[4];
          element_ops::depthwise_backward_block2(p, d_out.data(), mask, w.data(), b, by, bx, ch,
                                                 acc);
          for (int q = 0; q < 4; ++q) {
            const int iy = 2 * by + q / 2, ix = 2 * bx + q % 2;
            if (iy >= p.in_h || ix >= p.in_w) continue;
            const std::int64_t i = ((std::int64_t{b} * p.in_h + iy) * p.in_w + ix) * p.in_c + ch;
            mismatches += acc[q] != element_ops::backward_sum(p, d_out.data(), mask, w.data(), i);
            ++values;
          }
        }
      }
    }
  }
  CHECK(values == n * p.in_size());
  CHECK(mismatches == 0);

  // Fused with a pointwise op of 3 outputs (a separable layer's backward in one pass):
  // separable_backward_block2 against separable_backward value by value.
  if (relu) return;  // a fused depthwise op has no ReLU
  LayerParams pw;
  pw.kind = LayerKind::kPointwise;
  pw.in_h = pw.out_h = p.out_h;
  pw.in_w = pw.out_w = p.out_w;
  pw.in_c = p.out_c;
  pw.out_c = 3;
  pw.relu = true;
  const auto pw_w = random_floats(pw.weight_count(), -0.3, 0.3, rng);
  const auto pw_d_out = random_floats(n * pw.out_size(), -1, 1, rng);
  const auto pw_relu_out = random_floats(n * pw.out_size(), -0.5, 1, rng);
  mismatches = 0;
  for (int b = 0; b < n; ++b) {
    for (int by = 0; by < (p.in_h + 1) / 2; ++by) {
      for (int bx = 0; bx < (p.in_w + 1) / 2; ++bx) {
        for (int ch = 0; ch < p.in_c; ++ch) {
          float acc[4];
          element_ops::separable_backward_block2(p, w.data(), pw, pw_d_out.data(),
                                                 pw_relu_out.data(), pw_w.data(), b, by, bx, ch,
                                                 acc);
          for (int q = 0; q < 4; ++q) {
            const int iy = 2 * by + q / 2, ix = 2 * bx + q % 2;
            if (iy >= p.in_h || ix >= p.in_w) continue;
            const std::int64_t i = ((std::int64_t{b} * p.in_h + iy) * p.in_w + ix) * p.in_c + ch;
            mismatches +=
                acc[q] != element_ops::separable_backward(p, w.data(), pw, pw_d_out.data(),
                                                          pw_relu_out.data(), pw_w.data(), i);
          }
        }
      }
    }
  }
  CHECK(mismatches == 0);
}

}  // namespace stimloop
