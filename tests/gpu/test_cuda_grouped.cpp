// The tiled dense convolution (layer 0's shape: stride 1, three input channels) and grouped
// launches (one launch over many models with different shapes) against the CPU ops. Tolerance:
// |gpu - cpu| <= tol * max(1, |cpu|), 1e-5 for the forward pass (75-term sums) and 1e-4 for the
// backward pass, whose sums run over 25 taps x up to 46 channels (~1150 terms of O(1) values:
// float32 rounding in two summation orders measured up to 3e-5 on an H200). An indexing error
// gives O(1).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <tuple>
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

double worst_scaled(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  REQUIRE(gpu.size() == cpu.size());
  double worst = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    REQUIRE(std::isfinite(gpu[i]));
    worst = std::max(worst, std::abs(gpu[i] - cpu[i]) / std::max(1.0, std::abs(double(cpu[i]))));
  }
  return worst;
}

// One layer's data and its CPU results.
struct Case {
  LayerParams p;
  int n;
  std::vector<float> in, w, bias, d_out, out, d_in;
  cuda::DeviceBuffer<float> dev_in, dev_w, dev_bias, dev_d_out, dev_out, dev_d_in;

  Case(const LayerParams& params, int images, std::mt19937& rng) : p(params), n(images) {
    in = random_vector(n * p.in_size(), rng);
    w = random_vector(p.weight_count(), rng);
    bias = random_vector(p.out_c, rng);
    d_out = random_vector(n * p.out_size(), rng);
    out.resize(n * p.out_size());
    d_in.resize(n * p.in_size());
    stimloop::cpu::layer_forward(p, n, in.data(), w.data(), bias.data(), out.data());
    std::vector<float> masked = d_out;
    for (std::size_t i = 0; p.relu && i < masked.size(); ++i) {
      if (out[i] <= 0.0f) masked[i] = 0.0f;
    }
    stimloop::cpu::layer_backward_input(p, n, masked.data(), w.data(), d_in.data());
    dev_in = to_device(in), dev_w = to_device(w), dev_bias = to_device(bias);
    dev_d_out = to_device(d_out);
    REQUIRE(dev_out.allocate(out.size()).ok());
    REQUIRE(dev_d_in.allocate(d_in.size()).ok());
  }
  cuda::OpTask forward_task() {
    cuda::OpTask t{};
    t.p = p, t.n = n, t.in = dev_in.data(), t.w = dev_w.data(), t.bias = dev_bias.data();
    t.out = dev_out.data();
    return t;
  }
  // Uses the CPU forward output as the ReLU mask (the GPU's may differ by rounding at zero).
  cuda::DeviceBuffer<float> mask;
  cuda::OpTask backward_task() {
    mask = to_device(out);
    cuda::OpTask t{};
    t.p = p, t.n = n, t.in = dev_d_out.data(), t.aux = p.relu ? mask.data() : nullptr;
    t.w = dev_w.data(), t.out = dev_d_in.data();
    return t;
  }
};

}  // namespace

TEST_CASE("Tiled dense convolution matches the CPU on layer-0 shapes", "[gpu][ops]") {
  const int k = GENERATE(3, 5);
  const bool same = GENERATE(true, false);
  const int out_c = GENERATE(7, 16, 46);
  const bool relu = GENERATE(false, true);
  std::mt19937 rng(42 + k + out_c);
  for (auto [h, w, n] : {std::tuple{17, 23, 2}, std::tuple{112, 112, 1}, std::tuple{33, 64, 3}}) {
    const LayerParams p = make_params(LayerKind::kConv2D, h, w, 3, out_c, k, 1, same, relu);
    INFO("k " << k << (same ? " same" : " valid") << " out_c " << out_c << " " << h << "x" << w
              << (relu ? " relu" : ""));
    Case c(p, n, rng);
    REQUIRE(cuda::layer_forward(p, n, c.dev_in.data(), c.dev_w.data(), c.dev_bias.data(),
                                c.dev_out.data(), nullptr)
                .ok());
    cuda::OpTask b = c.backward_task();
    REQUIRE(cuda::layer_backward_input(p, n, b.in, b.aux, b.w, b.out, nullptr).ok());
    CHECK(worst_scaled(to_host(c.dev_out), c.out) <= 1e-5);
    CHECK(worst_scaled(to_host(c.dev_d_in), c.d_in) <= 1e-4);
  }
}

TEST_CASE("A grouped launch runs models of different shapes as one", "[gpu][ops]") {
  // The tuned kernels (GEMM pointwise, tiled dense) and the straightforward ones.
  const bool plain = GENERATE(false, true);
  if (plain) {
    setenv("STIMLOOP_CUDA_KERNELS", "plain", 1);
  } else {
    unsetenv("STIMLOOP_CUDA_KERNELS");
  }
  std::mt19937 rng(7);
  // Per kind, "models" with different channel counts, sizes and batches; the dense and depthwise
  // cases twice: all tiled-eligible, and with one member that forces the straightforward kernel.
  std::vector<std::vector<LayerParams>> sets = {
      {make_params(LayerKind::kConv2D, 112, 112, 3, 46, 5, 1, true, true),
       make_params(LayerKind::kConv2D, 40, 28, 3, 39, 5, 1, true, true),
       make_params(LayerKind::kConv2D, 17, 23, 3, 8, 5, 1, true, false)},
      {make_params(LayerKind::kConv2D, 30, 30, 3, 12, 5, 1, true, true),
       make_params(LayerKind::kConv2D, 30, 30, 4, 12, 5, 2, true, true)},
      {make_params(LayerKind::kDepthwise, 112, 112, 46, 46, 5, 2, true, true),
       make_params(LayerKind::kDepthwise, 28, 28, 12, 12, 5, 1, true, true),
       make_params(LayerKind::kDepthwise, 19, 13, 70, 70, 3, 2, false, false)},
      {make_params(LayerKind::kDepthwise, 112, 112, 46, 46, 5, 2, true, false),  // all stride 2:
       make_params(LayerKind::kDepthwise, 19, 13, 70, 70, 3, 2, false, false),   // the 2 x 2 block
       make_params(LayerKind::kDepthwise, 17, 23, 9, 9, 5, 2, true, true)},       // backward
      {make_params(LayerKind::kDepthwise, 28, 28, 219, 219, 28, 1, false, false),
       make_params(LayerKind::kDepthwise, 14, 14, 40, 40, 5, 1, true, true)},
      {make_params(LayerKind::kPointwise, 28, 28, 46, 60, 1, 1, true, true),
       make_params(LayerKind::kPointwise, 14, 14, 9, 3, 1, 1, true, true),
       make_params(LayerKind::kPointwise, 7, 7, 60, 4, 1, 1, true, false)},
      {make_params(LayerKind::kPointwise, 1, 1, 2352, 1, 1, 1, true, false),
       make_params(LayerKind::kPointwise, 1, 1, 588, 1, 1, 1, true, false)},
  };
  for (const auto& set : sets) {
    std::vector<std::unique_ptr<Case>> cases;
    std::vector<cuda::OpTask> fwd, bwd;
    int n = 1;
    for (const LayerParams& p : set) {
      cases.push_back(std::make_unique<Case>(p, n, rng));
      n = n % 3 + 1;
      fwd.push_back(cases.back()->forward_task());
      bwd.push_back(cases.back()->backward_task());
    }
    cuda::GroupedOp forward, backward;
    REQUIRE(forward.prepare(cuda::Pass::kForward, fwd, nullptr).ok());
    REQUIRE(backward.prepare(cuda::Pass::kBackward, bwd, nullptr).ok());
    INFO(stimloop::layer_kind_name(set[0].kind)
         << ": " << forward.kernel_name() << " / " << backward.kernel_name());
    REQUIRE(forward.launch(nullptr).ok());
    REQUIRE(backward.launch(nullptr).ok());
    for (auto& c : cases) {
      CHECK(worst_scaled(to_host(c->dev_out), c->out) <= 1e-4);
      CHECK(worst_scaled(to_host(c->dev_d_in), c->d_in) <= 1e-4);
    }
  }
  unsetenv("STIMLOOP_CUDA_KERNELS");
}

TEST_CASE("A grouped launch refuses mixed layer kinds", "[gpu][ops]") {
  cuda::OpTask a{}, b{};
  a.p.kind = LayerKind::kConv2D;
  b.p.kind = LayerKind::kDepthwise;
  a.n = b.n = 1;
  cuda::GroupedOp op;
  CHECK(op.prepare(cuda::Pass::kForward, {a, b}, nullptr).code() ==
        stimloop::StatusCode::kInvalidArgument);
}
