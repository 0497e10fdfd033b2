// Every CUDA op against the CPU op on deliberately odd shapes, forward and backward-to-input,
// with and without the fused ReLU. Tolerance: both sides are float32 with different summation
// orders (fmaf chains vs vectorised loops); for reductions of <= a few hundred terms of O(1)
// values the difference stays near 1e-6 relative, so 1e-5 * max(1, |cpu|) has margin and still
// catches any indexing error (which produces O(1) differences).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/gpu_test_support.h"

namespace {

using stimloop::LayerKind;
using stimloop::LayerParams;
namespace cuda = stimloop::cuda;
using stimloop::test::make_params;
using stimloop::test::random_vector;
using stimloop::test::to_device;
using stimloop::test::to_host;

void require_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double rtol) {
  REQUIRE(gpu.size() == cpu.size());
  double worst = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    REQUIRE(std::isfinite(gpu[i]));
    worst = std::max(worst, std::abs(gpu[i] - cpu[i]) / std::max(1.0, std::abs(double(cpu[i]))));
  }
  INFO("worst scaled difference " << worst);
  CHECK(worst <= rtol);
}

}  // namespace

TEST_CASE("CUDA ops match the CPU ops on odd shapes", "[gpu][ops]") {
  const auto kind = GENERATE(LayerKind::kConv2D, LayerKind::kDepthwise, LayerKind::kPointwise);
  const int stride = GENERATE(1, 2);
  const bool same = GENERATE(true, false);
  const bool relu = GENERATE(false, true);
  const int k = GENERATE(3, 5);
  const int n = 3, h = 17, w = 23, cin = 9, cout = 7;
  const LayerParams p = make_params(kind, h, w, cin, cout, k, stride, same, relu);
  INFO(stimloop::layer_kind_name(kind) << " stride " << stride << (same ? " same" : " valid")
                                       << (relu ? " relu" : "") << " k " << k);
  std::mt19937 rng(1234);
  const auto in = random_vector(n * p.in_size(), rng);
  const auto weights = random_vector(p.weight_count(), rng);
  const auto bias = random_vector(p.out_c, rng);
  const auto d_out = random_vector(n * p.out_size(), rng);

  std::vector<float> cpu_out(n * p.out_size()), cpu_d_in(n * p.in_size());
  stimloop::cpu::layer_forward(p, n, in.data(), weights.data(), bias.data(), cpu_out.data());
  std::vector<float> masked = d_out;  // the CPU backend masks before calling backward
  if (relu) {
    for (std::size_t i = 0; i < masked.size(); ++i) {
      if (cpu_out[i] <= 0.0f) masked[i] = 0.0f;
    }
  }
  stimloop::cpu::layer_backward_input(p, n, masked.data(), weights.data(), cpu_d_in.data());

  auto d_in_buf = to_device(in), d_w = to_device(weights), d_b = to_device(bias);
  auto d_g = to_device(d_out);
  cuda::DeviceBuffer<float> d_y, d_dx;
  REQUIRE(d_y.allocate(cpu_out.size()).ok());
  REQUIRE(d_dx.allocate(cpu_d_in.size()).ok());
  REQUIRE(
      cuda::layer_forward(p, n, d_in_buf.data(), d_w.data(), d_b.data(), d_y.data(), nullptr).ok());
  REQUIRE(cuda::layer_backward_input(p, n, d_g.data(), relu ? d_y.data() : nullptr, d_w.data(),
                                     d_dx.data(), nullptr)
              .ok());
  require_close(to_host(d_y), cpu_out, 1e-5);
  require_close(to_host(d_dx), cpu_d_in, 1e-5);
}

TEST_CASE("CUDA pointwise handles long reductions (Dense readout) and the 28x28 readout",
          "[gpu][ops]") {
  std::mt19937 rng(99);
  // Dense(1) on a flattened 28x28x3 tensor, batch 5: the warp-reduction path.
  LayerParams dense = make_params(LayerKind::kPointwise, 1, 1, 2352, 1, 1, 1, true, false);
  // The shared models' spatial readout: 28x28 'valid' depthwise on 219 channels.
  LayerParams readout = make_params(LayerKind::kDepthwise, 28, 28, 219, 219, 28, 1, false, false);
  for (const LayerParams& p : {dense, readout}) {
    const int n = 5;
    const auto in = random_vector(n * p.in_size(), rng);
    const auto weights = random_vector(p.weight_count(), rng);
    const auto bias = random_vector(p.out_c, rng);
    const auto d_out = random_vector(n * p.out_size(), rng);
    std::vector<float> cpu_out(n * p.out_size()), cpu_d_in(n * p.in_size());
    stimloop::cpu::layer_forward(p, n, in.data(), weights.data(), bias.data(), cpu_out.data());
    stimloop::cpu::layer_backward_input(p, n, d_out.data(), weights.data(), cpu_d_in.data());
    auto d_x = to_device(in), d_w = to_device(weights), d_b = to_device(bias),
         d_g = to_device(d_out);
    cuda::DeviceBuffer<float> d_y, d_dx;
    REQUIRE(d_y.allocate(cpu_out.size()).ok());
    REQUIRE(d_dx.allocate(cpu_d_in.size()).ok());
    REQUIRE(
        cuda::layer_forward(p, n, d_x.data(), d_w.data(), d_b.data(), d_y.data(), nullptr).ok());
    REQUIRE(cuda::layer_backward_input(p, n, d_g.data(), nullptr, d_w.data(), d_dx.data(), nullptr)
                .ok());
    // Sums of 784..2352 products of O(1) values: allow 1e-4 (float32, different orders).
    require_close(to_host(d_y), cpu_out, 1e-4);
    require_close(to_host(d_dx), cpu_d_in, 1e-5);
  }
}
