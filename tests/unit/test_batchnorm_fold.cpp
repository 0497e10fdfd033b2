// compile_network folds BatchNorm into the convolution before it, fuses ReLU and drops Flatten.
// Checked by evaluating the unfolded Keras graph directly (BatchNorm as gamma * (x - mean) /
// sqrt(var + eps) + beta, separable convolutions as two steps) and comparing it with the
// compiled chain, both in double and on the float CPU backend, forward and input gradient.
#include <catch2/catch.hpp>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "models/compile_network.h"
#include "models/demo_model.h"
#include "tests/support/reference_network.h"

namespace stimloop {
namespace {

using test::random_floats;
using test::RefResult;
using test::to_double;

// The compact-model pattern with random weights and BatchNorm statistics far from identity
// (variance in [0.01, 4), so epsilon = 0.001 changes some scales by up to 5%).
KerasGraph compact_like_graph() {
  return test::RandomGraphBuilder(21, 20, 3, 900)
      .conv2d(6, 5, 1, true)
      .batchnorm()
      .relu()
      .separable(5, 5, 2, true)
      .batchnorm()
      .relu()
      .flatten()
      .dense(2)
      .graph();
}

// Every other place BatchNorm can fold into: a convolution without bias (the fold creates one),
// a 1x1 convolution (compiled to a pointwise op), a depthwise convolution (weights with the
// channel fastest, like the pointwise ones) and a Dense layer after Flatten; plus the
// shared-model readout (one full-size 'valid' depthwise window per channel).
KerasGraph readout_graph() {
  return test::RandomGraphBuilder(11, 9, 3, 901)
      .conv2d(4, 3, 1, true, /*use_bias=*/false)
      .batchnorm()
      .relu()
      .conv2d(5, 1, 1, true)
      .batchnorm()
      .depthwise(11, 9, 1, false)
      .batchnorm()
      .relu()
      .flatten()
      .dense(3, /*use_bias=*/false)
      .batchnorm()
      .graph();
}

struct Case {
  std::string name;
  KerasGraph graph;
  double lo, hi;  // input range
};

// What a fold may change: every folded weight and bias is rounded to float once (relative
// 6e-8), so the compiled chain evaluated in double agrees with the unfolded graph to ~1e-7
// (measured: 2.5e-8 to 6e-8 relative L2 on the three cases). 1e-6 leaves a 15x margin and is
// far below what a wrong epsilon, a missing mean or a scale on the wrong weight axis gives
// (see "sensitive to epsilon" below: above 1e-4).
constexpr double kFoldTolerance = 1e-6;
// The float backend adds float arithmetic on top (see test_gradient_fd.cpp): measured 9e-8 to
// 1.7e-7 relative L2 here; 1e-5 as there.
constexpr double kFloatTolerance = 1e-5;

void compare_folded(const Case& c, int n) {
  CAPTURE(c.name, n);
  auto compiled = compile_network(c.graph);
  INFO(compiled.status().to_string());
  REQUIRE(compiled.ok());
  const auto net = std::make_shared<const Network>(std::move(compiled).value());
  const std::int64_t in_size = net->input_size(), out_size = net->num_outputs();

  std::mt19937 rng(77);
  const auto images = random_floats(n * in_size, c.lo, c.hi, rng);
  const auto seed = random_floats(n * out_size, -1, 1, rng);
  const auto images_d = to_double(images), seed_d = to_double(seed);

  const RefResult unfolded = test::ref_keras_graph(c.graph, images_d, n, &seed_d);
  REQUIRE(unfolded.outputs.size() == static_cast<std::size_t>(n * out_size));
  const double out_scale = test::max_abs(unfolded.outputs);
  const double grad_scale = test::max_abs(unfolded.d_input);
  REQUIRE(out_scale > 0);
  REQUIRE(grad_scale > 0);  // a dead network would prove nothing

  SECTION("compiled chain in double") {
    const RefResult folded = test::ref_network(*net, images_d, n, &seed_d);
    const auto out_report = test::compare_close(folded.outputs, unfolded.outputs,
                                                kFoldTolerance * out_scale, kFoldTolerance);
    const auto grad_report = test::compare_close(folded.d_input, unfolded.d_input,
                                                 kFoldTolerance * grad_scale, kFoldTolerance);
    INFO("outputs rel. L2 " << test::relative_l2_error(folded.outputs, unfolded.outputs) << ": "
                            << out_report.describe() << "\ngradient rel. L2 "
                            << test::relative_l2_error(folded.d_input, unfolded.d_input) << ": "
                            << grad_report.describe());
    CHECK(out_report.ok());
    CHECK(grad_report.ok());
  }

  SECTION("float CPU backend") {
    auto backend = make_cpu_backend();
    auto resident = backend->upload(net);
    REQUIRE(resident.ok());
    std::vector<float> outputs(n * out_size), forward_outputs(n * out_size), d_images(n * in_size);
    REQUIRE((*resident)->forward(images, n, forward_outputs).ok());
    REQUIRE((*resident)->input_gradient(images, n, seed, outputs, d_images).ok());
    const double out_err = test::relative_l2_error(forward_outputs, unfolded.outputs);
    const double grad_err = test::relative_l2_error(d_images, unfolded.d_input);
    const auto out_report = test::compare_close(forward_outputs, unfolded.outputs,
                                                2 * kFloatTolerance * out_scale, kFloatTolerance);
    const auto grad_report = test::compare_close(d_images, unfolded.d_input,
                                                 2 * kFloatTolerance * grad_scale, kFloatTolerance);
    INFO("outputs rel. L2 " << out_err << ": " << out_report.describe() << "\ngradient rel. L2 "
                            << grad_err << ": " << grad_report.describe());
    CHECK(out_report.ok());
    CHECK(grad_report.ok());
    CHECK(out_err < kFloatTolerance);
    CHECK(grad_err < kFloatTolerance);
    CHECK(test::first_bitwise_difference(outputs, forward_outputs) == -1);
  }
}

}  // namespace

TEST_CASE("compile_network produces the expected op chain", "[batchnorm]") {
  const KerasGraph graph = compact_like_graph();
  auto compiled = compile_network(graph);
  INFO(compiled.status().to_string());
  REQUIRE(compiled.ok());
  const Network& net = *compiled;
  CHECK(net.in_h == 21);
  CHECK(net.in_w == 20);
  CHECK(net.in_c == 3);
  REQUIRE(net.layers.size() == 4);
  const LayerParams& conv = net.layers[0].params;
  CHECK(conv.kind == LayerKind::kConv2D);
  CHECK((conv.out_h == 21 && conv.out_w == 20 && conv.out_c == 6));
  CHECK((conv.pad_top == 2 && conv.pad_left == 2));
  CHECK((conv.relu && conv.has_bias));
  const LayerParams& dw = net.layers[1].params;
  CHECK(dw.kind == LayerKind::kDepthwise);
  CHECK((dw.out_h == 11 && dw.out_w == 10 && dw.out_c == 6));  // 'same', stride 2
  CHECK((dw.pad_top == 2 && dw.pad_left == 1));  // totals 4 and 3: the odd pixel goes after
  CHECK((!dw.relu && !dw.has_bias));             // BN and ReLU belong to the pointwise half
  const LayerParams& pw = net.layers[2].params;
  CHECK(pw.kind == LayerKind::kPointwise);
  CHECK((pw.in_c == 6 && pw.out_c == 5 && pw.relu && pw.has_bias));
  const LayerParams& dense = net.layers[3].params;
  CHECK(dense.kind == LayerKind::kPointwise);
  CHECK((dense.in_h == 1 && dense.in_w == 1 && dense.in_c == 11 * 10 * 5 && dense.out_c == 2));
  CHECK(!dense.relu);
}

TEST_CASE("folded BatchNorm matches the unfolded Keras graph", "[batchnorm]") {
  SECTION("compact-model pattern, random weights and statistics") {
    compare_folded({"compact-like", compact_like_graph(), -1, 1}, 3);
  }
  SECTION("folds into bias-free conv, 1x1 conv, depthwise and Dense") {
    compare_folded({"readout", readout_graph(), -1, 1}, 2);
  }
  SECTION("the built-in demo model") {
    // Re-centered pixels: raw 0..255 minus channel means of about 100..116.
    compare_folded({"demo", build_demo_graph(), -116, 139}, 2);
  }
}

TEST_CASE("the BatchNorm check is sensitive to epsilon", "[batchnorm]") {
  // Guards the test data: were compile_network to use PyTorch's 1e-5 instead of the file's
  // 0.001, the outputs would move by far more than kFoldTolerance.
  const KerasGraph graph = compact_like_graph();
  KerasGraph torch_eps = graph;
  for (auto& l : torch_eps.layers) {
    if (l.type == KerasLayerType::kBatchNormalization) l.epsilon = 1e-5;
  }
  std::mt19937 rng(78);
  const auto images = to_double(random_floats(2 * 21 * 20 * 3, -1, 1, rng));
  const auto keras = test::ref_keras_graph(graph, images, 2).outputs;
  const auto torch = test::ref_keras_graph(torch_eps, images, 2).outputs;
  CHECK(test::relative_l2_error(torch, keras) > 100 * kFoldTolerance);
}

TEST_CASE("compile_network rejects BatchNorm that cannot be folded", "[batchnorm]") {
  // BatchNorm after a ReLU is no longer an affine map of the convolution's output.
  KerasGraph graph = test::RandomGraphBuilder(7, 7, 2, 902)
                         .conv2d(3, 3, 1, true)
                         .relu()
                         .batchnorm()
                         .flatten()
                         .dense(1)
                         .graph();
  const auto compiled = compile_network(graph);
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.status().code() == StatusCode::kUnimplemented);
  CHECK_THAT(compiled.status().message(), Catch::Contains("BatchNormalization"));
}

}  // namespace stimloop
