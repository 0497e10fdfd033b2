// The AVX-512 dense convolution (conv2d_avx512*.cpp) against the plain loops, forward and
// backward to the input, to the 1e-5 relative. The shapes walk its tiling: output channel
// counts around the 16-lane blocks and the passes of 3 or 4 blocks (3, 17, 60, 100), pixel tails
// of every size, tiles at both borders, kernels 1 to 5, strides 1 and 2 (the backward hands
// stride 2 to the AVX2 kernel, checked all the same), 'valid' windows that leave rows unread,
// both backward paths (at most 4 input channels: dot products along the gathered run; more: a
// forward convolution of the gradient with the flipped kernel), a Dense layer (1x1 image), and
// layer 0's shape (3 channels, 5x5, stride 1), which goes through Winograd F(4, 5).
// On a processor or build without AVX-512 the cases print SKIPPED and pass.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "tests/support/reference_network.h"
#include "tests/unit/fast_kernel_checks.h"

namespace stimloop {
namespace {

using test::ConvShape;

void check_against_plain(const LayerParams& p, int n, unsigned seed) {
  std::mt19937 rng(seed);
  const auto [in, w, bias, d_out] = test::random_operands(p, n, 100.0, rng);  // pixel-like range

  std::vector<float> plain(n * p.out_size()), fast(n * p.out_size(), NAN);
  cpu::conv2d_forward(p, n, in.data(), w.data(), bias.data(), plain.data());
  cpu::conv2d_forward_avx512(p, n, in.data(), w.data(), bias.data(), fast.data());
  CHECK(test::relative_error(fast, plain) < 1e-5);
  // Without a bias (the backward pass runs the forward kernel that way).
  std::vector<float> plain_nb(n * p.out_size()), fast_nb(n * p.out_size(), NAN);
  cpu::conv2d_forward(p, n, in.data(), w.data(), nullptr, plain_nb.data());
  cpu::conv2d_forward_avx512(p, n, in.data(), w.data(), nullptr, fast_nb.data());
  CHECK(test::relative_error(fast_nb, plain_nb) < 1e-5);
  // With the ReLU, which this kernel applies itself (the others leave it to dispatch).
  LayerParams with_relu = p;
  with_relu.relu = true;
  std::fill(fast.begin(), fast.end(), NAN);
  cpu::conv2d_forward_avx512(with_relu, n, in.data(), w.data(), bias.data(), fast.data());
  for (float& v : plain) v = std::max(v, 0.0f);
  CHECK(test::relative_error(fast, plain) < 1e-5);

  std::vector<float> d_plain(n * p.in_size()), d_fast(n * p.in_size(), NAN);
  cpu::conv2d_backward_input(p, n, d_out.data(), w.data(), d_plain.data());
  cpu::conv2d_backward_input_avx512(p, n, d_out.data(), w.data(), d_fast.data());
  CHECK(test::relative_error(d_fast, d_plain) < 1e-5);
}

bool skip_without_avx512() {
  if (cpu::use_avx512()) return false;
  std::puts("SKIPPED (AVX-512 kernels): this processor or build has no AVX-512F");
  return true;
}

}  // namespace

TEST_CASE("AVX-512 convolution agrees with the plain loops to 1e-5", "[ops][fast][avx512]") {
  if (skip_without_avx512()) return;
  // (h, w, in_c, out_c, k, stride, same)
  const ConvShape shape = GENERATE(
      // Layer 0 of the compact models, and its filter counts around the blocks.
      ConvShape{112, 112, 3, 46, 5, 1}, ConvShape{13, 19, 3, 17, 5, 1},
      ConvShape{9, 11, 3, 3, 5, 1}, ConvShape{15, 13, 3, 60, 5, 1}, ConvShape{10, 7, 3, 100, 3, 1},
      // Sliding tiles of 14 pixels, then the tail; one channel block (the 15-filter model).
      ConvShape{112, 112, 3, 15, 5, 1}, ConvShape{9, 45, 3, 16, 5, 1},
      ConvShape{8, 31, 3, 9, 5, 1, false}, ConvShape{6, 14, 3, 1, 5, 1},
      // 1, 2 and 4 input channels (the other gather tiles), 'valid' and a 4x4 kernel.
      ConvShape{17, 23, 1, 17, 3, 1}, ConvShape{17, 23, 2, 60, 5, 1, false},
      ConvShape{11, 9, 4, 100, 5, 1}, ConvShape{17, 23, 3, 17, 4, 1, false},
      // More input channels: backward as a forward convolution with the flipped kernel.
      ConvShape{12, 14, 9, 17, 3, 1}, ConvShape{16, 16, 46, 60, 1, 1, false},
      ConvShape{20, 21, 46, 3, 1, 1}, ConvShape{3, 5, 7, 24, 2, 1},
      ConvShape{17, 23, 9, 17, 4, 1, false},
      // Stride 2 (backward through the AVX2 kernel), a kernel larger than the image.
      ConvShape{17, 23, 5, 60, 5, 2}, ConvShape{17, 23, 3, 100, 3, 2, false},
      ConvShape{4, 3, 9, 3, 5, 2}, ConvShape{112, 112, 3, 17, 5, 2},
      // Layer 0 through Winograd F(4, 5) (conv2d_winograd_avx512.cpp): the largest model's 57
      // filters, passes of 3 + 2 and 3 + 3 + 3 blocks, rows of 1 to 7 outputs (every tile
      // group's tail), a row longer than one vector of tiles, images shorter than the kernel.
      ConvShape{112, 112, 3, 57, 5, 1}, ConvShape{13, 21, 3, 72, 5, 1},
      ConvShape{9, 30, 3, 130, 5, 1}, ConvShape{5, 1, 3, 20, 5, 1}, ConvShape{6, 2, 3, 33, 5, 1},
      ConvShape{7, 3, 3, 49, 5, 1}, ConvShape{4, 6, 3, 16, 5, 1}, ConvShape{3, 7, 3, 64, 5, 1},
      ConvShape{11, 133, 3, 40, 5, 1}, ConvShape{9, 70, 3, 5, 5, 1, false},
      // A row too long for the Winograd kernel (the direct one takes it).
      ConvShape{3, 1030, 3, 17, 5, 1});
  const int n = GENERATE(1, 3);
  const LayerParams p = test::conv_params(shape);
  CAPTURE(shape.h, shape.w, shape.in_c, shape.out_c, shape.k, shape.stride, shape.same, n);
  check_against_plain(p, n, 11u + static_cast<unsigned>(shape.out_c * 31 + shape.in_c * 7 + n));
}

TEST_CASE("AVX-512 pointwise and Dense layers agree with the plain loops to 1e-5",
          "[ops][fast][avx512]") {
  if (skip_without_avx512()) return;
  // (h, w, in_c, out_c): compact layer-1 pointwise layers (the largest model's 57 -> 72 in one
  // pass of 5 blocks), odd sizes, a layer-2 62 -> 3, a shared model's Dense (1x1 image: its
  // backward goes to the AVX2 kernel below 64 pixels a call).
  const std::array<int, 4> shape =
      GENERATE(std::array<int, 4>{56, 56, 46, 62}, std::array<int, 4>{7, 9, 50, 17},
               std::array<int, 4>{5, 3, 13, 100}, std::array<int, 4>{28, 28, 62, 3},
               std::array<int, 4>{1, 1, 2352, 219}, std::array<int, 4>{9, 13, 57, 72});
  const int n = GENERATE(1, 3);
  LayerParams p;  // a 1x1 convolution: the view dispatch.cpp hands the kernels
  p.kind = LayerKind::kConv2D;
  p.in_h = p.out_h = shape[0], p.in_w = p.out_w = shape[1];
  p.in_c = shape[2], p.out_c = shape[3];
  CAPTURE(shape[0], shape[1], shape[2], shape[3], n);
  check_against_plain(p, n, 3u + static_cast<unsigned>(p.in_c + n));
}

}  // namespace stimloop
