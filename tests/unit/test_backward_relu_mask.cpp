// layer_backward_input's in_relu: the ReLU mask of the layer below, applied by the op as it
// writes d_in (fused into the depthwise kernels, a pass of its own after the others). It must
// equal the unfused order (backward, then zero where the activation is <= 0) exactly, on every
// kernel the dispatch can pick.
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "tests/support/reference_network.h"
#include "tests/unit/fast_kernel_checks.h"

namespace stimloop {

TEST_CASE("the fused ReLU mask of the backward pass equals a separate mask pass", "[ops]") {
  // (kind, h, w, c_in, c_out, k, stride)
  using Shape = std::array<int, 7>;
  const Shape s = GENERATE(Shape{1, 112, 112, 46, 46, 5, 2}, Shape{1, 17, 23, 9, 9, 3, 1},
                           Shape{1, 28, 28, 70, 70, 5, 1}, Shape{2, 28, 28, 46, 3, 1, 1},
                           Shape{2, 14, 14, 40, 60, 1, 1}, Shape{0, 19, 13, 3, 17, 5, 1});
  const auto kind =
      s[0] == 0 ? LayerKind::kConv2D : (s[0] == 1 ? LayerKind::kDepthwise : LayerKind::kPointwise);
  const LayerParams p = [&] {
    LayerParams q = test::conv_params({s[1], s[2], s[3], s[4], s[5], s[6]});
    q.kind = kind;
    return q;
  }();
  CAPTURE(s[0], s[1], s[2], s[3], s[4], s[5], s[6]);
  const int n = 2;
  std::mt19937 rng(5u + static_cast<unsigned>(s[3] * 13 + s[5]));
  const auto w = test::random_floats(p.weight_count(), -0.5, 0.5, rng);
  const auto d_out = test::random_floats(n * p.out_size(), -1, 1, rng);
  auto act = test::random_floats(n * p.in_size(), -1, 1, rng);    // half of it masked
  for (std::size_t i = 0; i < act.size(); i += 7) act[i] = 0.0f;  // exact zeros are masked too

  std::vector<float> separate(n * p.in_size()), fused(n * p.in_size(), NAN);
  cpu::layer_backward_input(p, n, d_out.data(), w.data(), separate.data());
  for (std::size_t i = 0; i < separate.size(); ++i) {
    if (act[i] <= 0.0f) separate[i] = 0.0f;
  }
  cpu::layer_backward_input(p, n, d_out.data(), w.data(), fused.data(), act.data());
  CHECK(fused == separate);
}

}  // namespace stimloop
