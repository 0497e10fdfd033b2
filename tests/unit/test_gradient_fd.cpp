// Input gradients checked by central differences in double precision, first on the reference
// itself (compiled op chains and unfolded Keras graphs), then the float CPU backend against
// the reference's double gradient.
//
// Every model here is piecewise linear in its input (convolutions, BatchNorm, ReLU, Dense), so
// a central difference whose two ends lie in the same linear piece is exact up to rounding:
// error ~ 1e-16 * |objective terms| / h ~ 1e-11 for h = 1e-4. The only way it can be wrong is a
// step that crosses a ReLU kink, detected by comparing the sign pattern of every ReLU input at
// x - h, x and x + h; such coordinates are skipped (with h = 1e-4 and O(1) activations that is
// rare: none in the cases below, where the measured worst error is 4e-12).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "tests/support/reference_network.h"

namespace stimloop {
namespace {

using test::random_floats;
using test::RefResult;
using test::to_double;

constexpr double kStep = 1e-4;
// Central differences are exact here apart from rounding (see top); 1e-8 relative to the largest
// gradient component is ~1e3x above that rounding and ~1e6x below a wrong gradient path.
constexpr double kFdTolerance = 1e-8;

struct FdModel {
  std::function<std::vector<double>(const std::vector<double>&)> outputs;  // one image
  std::function<std::vector<bool>(const std::vector<double>&)> relu_pattern;
};

struct FdSummary {
  int checked = 0, skipped = 0, failed = 0;
  double worst = 0;  // largest |fd - analytic| / scale
};

// Compares analytic d(seed . outputs)/d(image) of one image with central differences.
FdSummary finite_differences(const FdModel& model, const std::vector<double>& image,
                             const std::vector<double>& seed, const std::vector<double>& analytic) {
  auto objective = [&](const std::vector<double>& x) {
    const auto out = model.outputs(x);
    double s = 0;
    for (std::size_t k = 0; k < out.size(); ++k) s += seed[k] * out[k];
    return s;
  };
  const auto pattern = model.relu_pattern(image);
  const double scale = std::max(1.0, test::max_abs(analytic));
  FdSummary summary;
  std::vector<double> plus = image, minus = image;
  for (std::size_t i = 0; i < image.size(); ++i) {
    plus[i] = image[i] + kStep;
    minus[i] = image[i] - kStep;
    if (model.relu_pattern(plus) != pattern || model.relu_pattern(minus) != pattern) {
      ++summary.skipped;
    } else {
      const double fd = (objective(plus) - objective(minus)) / (2 * kStep);
      const double err = std::abs(fd - analytic[i]) / scale;
      summary.worst = std::max(summary.worst, err);
      if (err > kFdTolerance) {
        ++summary.failed;
        UNSCOPED_INFO("input " << i << ": finite difference " << fd << ", analytic "
                               << analytic[i]);
      }
      ++summary.checked;
    }
    plus[i] = minus[i] = image[i];
  }
  return summary;
}

std::vector<double> slice(const std::vector<double>& v, std::size_t i, std::size_t size) {
  return {v.begin() + i * size, v.begin() + (i + 1) * size};
}

// Runs the batch gradient, then checks every image's gradient coordinate by coordinate.
void check_model_gradient(const FdModel& model, std::size_t in_size, std::size_t out_size,
                          const RefResult& batch, const std::vector<double>& images,
                          const std::vector<double>& seed, int n) {
  REQUIRE(batch.d_input.size() == n * in_size);
  for (int b = 0; b < n; ++b) {
    CAPTURE(b);
    const auto image = slice(images, b, in_size);
    // The batch evaluation and the single-image one agree exactly in double.
    CHECK(model.outputs(image) == slice(batch.outputs, b, out_size));
    const FdSummary s = finite_differences(model, image, slice(seed, b, out_size),
                                           slice(batch.d_input, b, in_size));
    INFO("checked " << s.checked << ", skipped at a ReLU kink " << s.skipped
                    << ", worst relative error " << s.worst);
    CHECK(s.failed == 0);
    // Most coordinates must be checkable, or the test proves nothing.
    CHECK(s.checked >= 0.9 * static_cast<double>(in_size));
  }
}

// conv 5x5 'same' -> ReLU, depthwise 3x3 stride 2 -> pointwise -> ReLU, Flatten + Dense.
Network small_network(std::uint32_t seed) {
  return test::RandomNetworkBuilder(13, 11, 3, seed)
      .conv2d(4, 5, 1, true, true)
      .depthwise(3, 2, true, false)
      .pointwise(5, true)
      .dense(2)
      .network();
}

}  // namespace

TEST_CASE("reference network gradient matches central differences", "[gradient]") {
  const Network net = small_network(GENERATE(11u, 12u));
  const int n = 2;
  std::mt19937 rng(5);
  const auto images = to_double(random_floats(n * net.input_size(), -1, 1, rng));
  const std::size_t in_size = net.input_size(), out_size = net.num_outputs();

  SECTION("random seed") {
    const auto seed = to_double(random_floats(n * out_size, -1, 1, rng));
    const RefResult ref = test::ref_network(net, images, n, &seed);
    const FdModel model{
        [&](const std::vector<double>& x) { return test::ref_network(net, x, 1).outputs; },
        [&](const std::vector<double>& x) { return test::ref_network_relu_pattern(net, x, 1); }};
    check_model_gradient(model, in_size, out_size, ref, images, seed, n);
  }
  SECTION("one-hot seed on output 1") {
    std::vector<double> seed(n * out_size, 0.0);
    for (int b = 0; b < n; ++b) seed[b * out_size + 1] = 1.0;
    const RefResult ref = test::ref_network(net, images, n, &seed);
    const FdModel model{
        [&](const std::vector<double>& x) { return test::ref_network(net, x, 1).outputs; },
        [&](const std::vector<double>& x) { return test::ref_network_relu_pattern(net, x, 1); }};
    check_model_gradient(model, in_size, out_size, ref, images, seed, n);
  }
}

TEST_CASE("reference Keras graph gradient matches central differences", "[gradient]") {
  SECTION("conv -> BN -> relu -> separable stride 2 -> BN -> relu -> flatten -> dense") {
    const KerasGraph graph = test::RandomGraphBuilder(13, 11, 3, 21)
                                 .conv2d(4, 5, 1, true)
                                 .batchnorm()
                                 .relu()
                                 .separable(5, 3, 2, true)
                                 .batchnorm()
                                 .relu()
                                 .flatten()
                                 .dense(2)
                                 .graph();
    const int n = 2;
    const std::size_t in_size = 13 * 11 * 3, out_size = 2;
    std::mt19937 rng(6);
    const auto images = to_double(random_floats(n * in_size, -1, 1, rng));
    const auto seed = to_double(random_floats(n * out_size, -1, 1, rng));
    const RefResult ref = test::ref_keras_graph(graph, images, n, &seed);
    const FdModel model{
        [&](const std::vector<double>& x) { return test::ref_keras_graph(graph, x, 1).outputs; },
        [&](const std::vector<double>& x) {
          return test::ref_keras_graph_relu_pattern(graph, x, 1);
        }};
    check_model_gradient(model, in_size, out_size, ref, images, seed, n);
  }
  SECTION("conv without bias -> BN -> relu -> 1x1 conv -> full-size depthwise readout") {
    // The shared-model readout: a 1x1 mixing convolution, then one spatial window per channel.
    const KerasGraph graph = test::RandomGraphBuilder(9, 7, 3, 22)
                                 .conv2d(4, 3, 1, true, /*use_bias=*/false)
                                 .batchnorm()
                                 .relu()
                                 .conv2d(6, 1, 1, true)
                                 .depthwise(9, 7, 1, false)
                                 .flatten()
                                 .graph();
    const int n = 1;
    const std::size_t in_size = 9 * 7 * 3, out_size = 6;
    std::mt19937 rng(7);
    const auto images = to_double(random_floats(n * in_size, -1, 1, rng));
    const auto seed = to_double(random_floats(n * out_size, -1, 1, rng));
    const RefResult ref = test::ref_keras_graph(graph, images, n, &seed);
    const FdModel model{
        [&](const std::vector<double>& x) { return test::ref_keras_graph(graph, x, 1).outputs; },
        [&](const std::vector<double>& x) {
          return test::ref_keras_graph_relu_pattern(graph, x, 1);
        }};
    check_model_gradient(model, in_size, out_size, ref, images, seed, n);
  }
}

TEST_CASE("CPU backend input gradient matches the double reference", "[gradient][backend]") {
  // A deeper chain on a 29 x 31 image: two stride-2 stages, ReLU after each, Dense(3) readout.
  const auto net = std::make_shared<const Network>(test::RandomNetworkBuilder(29, 31, 3, 31)
                                                       .conv2d(8, 5, 1, true, true)
                                                       .depthwise(5, 2, true, false)
                                                       .pointwise(6, true)
                                                       .depthwise(5, 2, true, false)
                                                       .pointwise(4, true)
                                                       .dense(3)
                                                       .network());
  auto backend = make_cpu_backend();
  auto resident = backend->upload(net);
  REQUIRE(resident.ok());

  const int n = 3;
  const std::size_t in_size = net->input_size(), out_size = net->num_outputs();
  std::mt19937 rng(8);
  const auto images = random_floats(n * in_size, -1, 1, rng);

  auto check_seed = [&](const std::vector<float>& seed) {
    std::vector<float> outputs(n * out_size), d_images(n * in_size);
    REQUIRE((*resident)->input_gradient(images, n, seed, outputs, d_images).ok());
    const auto seed_d = to_double(seed);
    const RefResult ref = test::ref_network(*net, to_double(images), n, &seed_d);
    // Float against double on the same float inputs and weights. Each op rounds its sums to
    // float (relative ~1e-7 for the <=200-term sums here), and the errors of six layers add up
    // roughly in quadrature: measured 2.4e-7 for the outputs and 1.5e-7 for the gradient
    // (relative L2). 1e-5 leaves a 40x margin; a wrong ReLU mask, tap or stride gives errors of
    // order 1e-2 or more.
    const double out_err = test::relative_l2_error(outputs, ref.outputs);
    const double grad_err = test::relative_l2_error(d_images, ref.d_input);
    const auto grad_report = test::compare_close(d_images, ref.d_input, 1e-5, 0);
    INFO("outputs rel. L2 error " << out_err << ", gradient rel. L2 error " << grad_err << "; "
                                  << grad_report.describe());
    CHECK(grad_report.non_finite == 0);
    CHECK(out_err < 1e-5);
    CHECK(grad_err < 1e-5);
    CHECK(test::max_abs(ref.d_input) > 1e-3);  // a vanishing gradient would prove nothing
  };

  SECTION("one-hot seeds") {
    for (std::size_t k = 0; k < out_size; ++k) {
      CAPTURE(k);
      std::vector<float> seed(n * out_size, 0.0f);
      for (int b = 0; b < n; ++b) seed[b * out_size + k] = 1.0f;
      check_seed(seed);
    }
  }
  SECTION("random seed over all outputs") { check_seed(random_floats(n * out_size, -1, 1, rng)); }
}

}  // namespace stimloop
