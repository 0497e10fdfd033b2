// The fast CPU kernels against the plain loops they replace, on the shapes of the op tests and
// the published layer 0 (3 -> 46 at 112 x 112, the bulk of a compact model's arithmetic). Both
// paths are also checked against the double reference in test_ops.cpp (through dispatch); here
// the bar is the issue's: agreement to 1e-5 relative.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "tests/support/reference_network.h"
#include "tests/unit/fast_kernel_checks.h"

namespace stimloop {
namespace {

using test::conv_params;
using test::ConvShape;
using test::relative_error;

}  // namespace

TEST_CASE("AVX2 convolution agrees with the plain loops to 1e-5", "[ops][fast]") {
  if (!cpu::use_avx2()) {
    std::puts("SKIPPED (AVX2 kernels): this processor or build has no AVX2 + FMA");
    return;
  }
  const ConvShape shape = GENERATE(
      ConvShape{112, 112, 3, 46, 5, 1}, ConvShape{17, 23, 9, 5, 5, 2},
      ConvShape{13, 19, 3, 17, 5, 1}, ConvShape{9, 7, 6, 64, 3, 1}, ConvShape{4, 3, 5, 9, 5, 2},
      // Layer 0 through Winograd F(4, 5) on 8 lanes: 57 and 15 filters (passes of 3 + 3 + 2 and
      // 2 blocks), one block, rows of 1 to 7 outputs, a long row, 'valid', images shorter than
      // the kernel.
      ConvShape{112, 112, 3, 57, 5, 1}, ConvShape{112, 112, 3, 15, 5, 1},
      ConvShape{9, 70, 3, 5, 5, 1, false}, ConvShape{5, 1, 3, 20, 5, 1},
      ConvShape{6, 2, 3, 33, 5, 1}, ConvShape{7, 3, 3, 9, 5, 1}, ConvShape{4, 6, 3, 24, 5, 1},
      ConvShape{3, 7, 3, 64, 5, 1}, ConvShape{11, 133, 3, 40, 5, 1},
      // A last group that reads past the padded tiles into the slack; a row too long for the
      // Winograd kernel (the direct one takes it).
      ConvShape{5, 32, 3, 12, 5, 1}, ConvShape{3, 1030, 3, 17, 5, 1});
  const int n = GENERATE(1, 2);
  const LayerParams p = conv_params(shape);
  CAPTURE(shape.h, shape.w, shape.in_c, shape.out_c, shape.k, shape.stride, shape.same, n);
  std::mt19937 rng(99u + static_cast<unsigned>(shape.out_c * 31 + shape.in_c));
  const auto [in, w, bias, d_out] = test::random_operands(p, n, 100.0, rng);  // pixel-like range

  std::vector<float> plain(n * p.out_size()), fast(n * p.out_size(), NAN);
  cpu::conv2d_forward(p, n, in.data(), w.data(), bias.data(), plain.data());
  cpu::conv2d_forward_avx2(p, n, in.data(), w.data(), bias.data(), fast.data());
  CHECK(relative_error(fast, plain) < 1e-5);
  std::vector<float> plain_nb(n * p.out_size()), fast_nb(n * p.out_size(), NAN);  // no bias
  cpu::conv2d_forward(p, n, in.data(), w.data(), nullptr, plain_nb.data());
  cpu::conv2d_forward_avx2(p, n, in.data(), w.data(), nullptr, fast_nb.data());
  CHECK(relative_error(fast_nb, plain_nb) < 1e-5);

  std::vector<float> d_plain(n * p.in_size()), d_fast(n * p.in_size(), NAN);
  cpu::conv2d_backward_input(p, n, d_out.data(), w.data(), d_plain.data());
  cpu::conv2d_backward_input_avx2(p, n, d_out.data(), w.data(), d_fast.data());
  CHECK(relative_error(d_fast, d_plain) < 1e-5);
}

TEST_CASE("pointwise ops through the fast convolutions agree with the plain loops to 1e-5",
          "[ops][fast]") {
  if (!cpu::use_avx2()) {
    std::puts("SKIPPED (AVX2 kernels): this processor or build has no AVX2 + FMA");
    return;
  }
  // (h, w, in_c, out_c): a compact layer-1 pointwise, a shared model's wide one, a Dense.
  const std::array<int, 4> shape =
      GENERATE(std::array<int, 4>{56, 56, 46, 62}, std::array<int, 4>{7, 9, 50, 50},
               std::array<int, 4>{1, 1, 2352, 219});
  const LayerParams p = test::pointwise_params(shape[0], shape[1], shape[2], shape[3]);
  CAPTURE(shape[0], shape[1], shape[2], shape[3]);
  std::mt19937 rng(7u + static_cast<unsigned>(p.in_c));
  const int n = 2;
  const auto [in, w, bias, d_out] = test::random_operands(p, n, 1.0, rng);
  std::vector<float> plain(n * p.out_size()), fast(n * p.out_size(), NAN);
  cpu::pointwise_forward(p, n, in.data(), w.data(), bias.data(), plain.data());
  cpu::layer_forward(p, n, in.data(), w.data(), bias.data(), fast.data());  // dispatched
  CHECK(relative_error(fast, plain) < 1e-5);
  std::vector<float> d_plain(n * p.in_size()), d_fast(n * p.in_size(), NAN);
  cpu::pointwise_backward_input(p, n, d_out.data(), w.data(), d_plain.data());
  cpu::layer_backward_input(p, n, d_out.data(), w.data(), d_fast.data());
  CHECK(relative_error(d_fast, d_plain) < 1e-5);
  // Dispatch takes the AVX-512 convolution where the processor has it: the AVX2 one directly.
  LayerParams conv = p;
  conv.kind = LayerKind::kConv2D;
  std::fill(fast.begin(), fast.end(), NAN);
  cpu::conv2d_forward_avx2(conv, n, in.data(), w.data(), bias.data(), fast.data());
  CHECK(relative_error(fast, plain) < 1e-5);
  std::fill(d_fast.begin(), d_fast.end(), NAN);
  cpu::conv2d_backward_input_avx2(conv, n, d_out.data(), w.data(), d_fast.data());
  CHECK(relative_error(d_fast, d_plain) < 1e-5);
}

}  // namespace stimloop

namespace stimloop {

TEST_CASE("AVX2 depthwise agrees with the plain loops to 1e-5", "[ops][fast]") {
  if (!cpu::use_avx2()) {
    std::puts("SKIPPED (AVX2 kernels): this processor or build has no AVX2 + FMA");
    return;
  }
  // (h, w, channels, k, stride, same): compact layers 1-4, a 70-channel two-pass case, the shared
  // models' 28x28 'valid' readout, 3 channels (one masked block), the row tiles' 3x3 shapes.
  const std::array<int, 6> c =
      GENERATE(std::array<int, 6>{112, 112, 46, 5, 2, 1}, std::array<int, 6>{28, 28, 3, 5, 1, 1},
               std::array<int, 6>{15, 13, 70, 5, 2, 1}, std::array<int, 6>{28, 28, 50, 28, 1, 0},
               std::array<int, 6>{9, 11, 8, 3, 1, 1}, std::array<int, 6>{15, 13, 20, 3, 2, 1});
  LayerParams p;
  p.kind = LayerKind::kDepthwise;
  p.in_h = c[0], p.in_w = c[1], p.in_c = p.out_c = c[2];
  p.k_h = p.k_w = c[3];
  p.stride_h = p.stride_w = c[4];
  const AxisGeometry gy = c[5] ? same_padding(c[0], c[3], c[4]) : valid_padding(c[0], c[3], c[4]);
  const AxisGeometry gx = c[5] ? same_padding(c[1], c[3], c[4]) : valid_padding(c[1], c[3], c[4]);
  p.out_h = gy.out, p.out_w = gx.out, p.pad_top = gy.pad_before, p.pad_left = gx.pad_before;
  CAPTURE(c[0], c[1], c[2], c[3], c[4], c[5]);
  std::mt19937 rng(5u + static_cast<unsigned>(c[2] * 13 + c[3]));
  const int n = 2;
  const auto in = test::random_floats(n * p.in_size(), -1, 1, rng);
  const auto w = test::random_floats(p.weight_count(), -0.3, 0.3, rng);
  const auto bias = test::random_floats(p.out_c, -1, 1, rng);
  const auto d_out = test::random_floats(n * p.out_size(), -1, 1, rng);
  std::vector<float> plain(n * p.out_size()), fast(n * p.out_size(), NAN);
  cpu::depthwise_forward(p, n, in.data(), w.data(), bias.data(), plain.data());
  cpu::depthwise_forward_avx2(p, n, in.data(), w.data(), bias.data(), fast.data());
  CHECK(relative_error(fast, plain) < 1e-5);
  // Backward, without and with the fused ReLU mask of the layer below (its output `act`).
  const auto act = test::random_floats(n * p.in_size(), -1, 1, rng);
  for (const float* mask : {static_cast<const float*>(nullptr), act.data()}) {
    std::vector<float> d_plain(n * p.in_size()), d_fast(n * p.in_size(), NAN);
    cpu::depthwise_backward_input(p, n, d_out.data(), w.data(), d_plain.data(), mask);
    cpu::depthwise_backward_input_avx2(p, n, d_out.data(), w.data(), d_fast.data(), mask);
    CHECK(relative_error(d_fast, d_plain) < 1e-5);
  }
}

}  // namespace stimloop
