// The pointwise kernels for few output channels (the compact models' 3-filter layers) against
// the plain loops, forward and backward, on odd channel counts and batches: 1e-5 relative.
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/pointwise_few.h"
#include "tests/unit/fast_kernel_checks.h"

namespace stimloop {

TEST_CASE("pointwise kernels for few outputs agree with the plain loops to 1e-5", "[ops][fast]") {
  if (!cpu::use_avx2()) {
    std::puts("SKIPPED (AVX2 kernels): this processor or build has no AVX2 + FMA");
    return;
  }
  // (h, w, in_c, out_c): a compact layer-2 pointwise (46 -> 3 at 28x28), 3 -> 3, odd ones.
  const std::array<int, 4> shape =
      GENERATE(std::array<int, 4>{28, 28, 46, 3}, std::array<int, 4>{28, 28, 3, 3},
               std::array<int, 4>{5, 7, 61, 7}, std::array<int, 4>{3, 2, 1, 2});
  const int n = GENERATE(1, 3);
  const LayerParams p = test::pointwise_params(shape[0], shape[1], shape[2], shape[3]);
  CAPTURE(shape[0], shape[1], shape[2], shape[3], n);
  REQUIRE(cpu::pointwise_few_outputs(p));
  std::mt19937 rng(11u + static_cast<unsigned>(p.in_c * 7 + p.out_c));
  const auto [in, w, bias, d_out] = test::random_operands(p, n, 1.0, rng);

  std::vector<float> plain(n * p.out_size()), fast(n * p.out_size(), NAN);
  cpu::pointwise_forward(p, n, in.data(), w.data(), bias.data(), plain.data());
  cpu::pointwise_forward_few(p, n, in.data(), w.data(), bias.data(), fast.data());
  CHECK(test::relative_error(fast, plain) < 1e-5);
  cpu::layer_forward(p, n, in.data(), w.data(), bias.data(), fast.data());  // dispatched
  CHECK(test::relative_error(fast, plain) < 1e-5);

  std::vector<float> d_plain(n * p.in_size()), d_fast(n * p.in_size(), NAN);
  cpu::pointwise_backward_input(p, n, d_out.data(), w.data(), d_plain.data());
  cpu::pointwise_backward_input_few(p, n, d_out.data(), w.data(), d_fast.data());
  CHECK(test::relative_error(d_fast, d_plain) < 1e-5);
}

}  // namespace stimloop
