// The AVX-512 depthwise kernels against the plain loops (1e-5 relative) and against the AVX2
// kernels (identical: both sum each element's taps in order with one FMA each), forward and
// backward, with and without the fused ReLU mask.
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

TEST_CASE("AVX-512 depthwise agrees with the plain loops and equals the AVX2 kernels",
          "[ops][fast]") {
  if (!cpu::use_avx512()) {
    std::puts("SKIPPED (AVX-512 kernels): this processor or build has no AVX-512F");
    return;
  }
  // (h, w, channels, k, stride, same): compact layers 1-4, a 150-channel two-pass case, the
  // shared models' 28x28 'valid' readout, 3 channels (one masked block), 16 (one full block).
  using Shape = std::array<int, 6>;
  const Shape c =
      GENERATE(Shape{112, 112, 46, 5, 2, 1}, Shape{28, 28, 3, 5, 1, 1}, Shape{15, 13, 150, 5, 2, 1},
               Shape{28, 28, 50, 28, 1, 0}, Shape{9, 11, 16, 3, 1, 1}, Shape{4, 3, 9, 5, 2, 1},
               Shape{15, 13, 20, 3, 2, 1});
  const LayerParams p = [&] {
    LayerParams q = test::conv_params({c[0], c[1], c[2], c[2], c[3], c[4], c[5] != 0});
    q.kind = LayerKind::kDepthwise;
    return q;
  }();
  CAPTURE(c[0], c[1], c[2], c[3], c[4], c[5]);
  std::mt19937 rng(17u + static_cast<unsigned>(c[2] * 13 + c[3]));
  const int n = 2;
  const auto [in, w, bias, d_out] = test::random_operands(p, n, 1.0, rng);
  const auto act = test::random_floats(n * p.in_size(), -1, 1, rng);

  std::vector<float> plain(n * p.out_size()), avx2(n * p.out_size()), fast(n * p.out_size(), NAN);
  cpu::depthwise_forward(p, n, in.data(), w.data(), bias.data(), plain.data());
  cpu::depthwise_forward_avx2(p, n, in.data(), w.data(), bias.data(), avx2.data());
  cpu::depthwise_forward_avx512(p, n, in.data(), w.data(), bias.data(), fast.data());
  CHECK(test::relative_error(fast, plain) < 1e-5);
  CHECK(fast == avx2);

  for (const float* mask : {static_cast<const float*>(nullptr), act.data()}) {
    std::vector<float> d_plain(n * p.in_size()), d_avx2(n * p.in_size());
    std::vector<float> d_fast(n * p.in_size(), NAN);
    cpu::depthwise_backward_input(p, n, d_out.data(), w.data(), d_plain.data(), mask);
    cpu::depthwise_backward_input_avx2(p, n, d_out.data(), w.data(), d_avx2.data(), mask);
    cpu::depthwise_backward_input_avx512(p, n, d_out.data(), w.data(), d_fast.data(), mask);
    CHECK(test::relative_error(d_fast, d_plain) < 1e-5);
    CHECK(d_fast == d_avx2);
  }
}

}  // namespace stimloop
