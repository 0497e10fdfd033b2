// Golden input-gradient tests: d(response)/d(input pixel) of the 12 compact models of
// golden/grad_models.txt on golden images 0, 1, 32, 33, from the float32 CPU backend (one-hot
// output seed) against the float64 reference golden/grad_input_f64.npy.
//
// Tolerance: relative L2 error ||g - ref|| / ||ref|| <= 1e-4 per (model, image). A gradient is a
// 112x112x3 field whose entries span several orders of magnitude (near zero wherever ReLUs are
// off), so an element-wise bound would be dominated by cancellation in tiny entries; the L2 ratio
// measures the error relative to the field's own scale. The backward pass has the forward pass's
// depth and sum lengths, so the same float32-vs-float64 argument applies (see
// test_golden_forward.cpp); measured: at most ~2e-7 on the 46 pairs without kinks.
// Two pairs hold a ReLU whose input sits within float32 rounding of zero (see golden_compare.h):
// float32 takes the other one-sided derivative there, which moves the field by 3e-4 and 3e-2 in
// the unit's receptive field only. Such pairs pass when the error outside that footprint is
// within tolerance; more than 4 such pairs would fail the test.
// The responses at the same points (grad_responses_f64.npy) are held to the forward tolerance.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "common/npy.h"
#include "kernels/backend.h"
#include "models/keras_import.h"
#include "models/preprocess.h"
#include "tests/golden/golden_compare.h"
#include "tests/support/test_data.h"
#include "tests/support/v4_images.h"

namespace fs = std::filesystem;

namespace stimloop::test {
namespace {

constexpr double kGradientTolerance = 1e-4;  // relative L2, per (model, image)
constexpr double kForwardTolerance = 1e-4;   // |ours - ref| / max(1, |ref|)

}  // namespace

TEST_CASE("input gradients of 12 compact models match float64 gradients", "[golden]") {
  const auto dir = v4_data_dir();
  if (!dir) {
    print_skip("golden input gradients");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto golden = read_golden_gradients(*dir);
  REQUIRE(golden.ok());
  const auto& models = golden->models;
  const auto& grad_models = golden->grad_models;
  REQUIRE(grad_models.size() == 12);
  const std::vector<float> images = recenter_rgb8(golden->raw, kV4ChannelMeans);
  const std::vector<double>& expected_grad = golden->expected_grad;
  const std::vector<double>& expected_resp = golden->expected_resp;

  auto backend = make_cpu_backend();
  Worst worst_grad, worst_clean, worst_outside, worst_resp;
  int kink_pairs = 0;
  const std::size_t field = kV4ImageBytes;  // elements per image
  for (const auto& g : grad_models) {
    REQUIRE(g.model_index >= 0);
    REQUIRE(g.model_index < static_cast<int>(models.size()));
    const auto& entry = models[static_cast<std::size_t>(g.model_index)];
    REQUIRE(entry.session == g.session);
    REQUIRE(entry.neuron == g.neuron);
    const std::string path = (fs::path(*dir) / "compact_models" / entry.file).string();
    INFO(path);
    const auto model = load_keras_model(path);
    REQUIRE(model.ok());
    auto resident = backend->upload((*model)->network);
    REQUIRE(resident.ok());

    const std::vector<float> seed(4, 1.0f);  // one output per compact model: one-hot = 1
    std::vector<float> out(4), d_images(images.size());
    REQUIRE((*resident)->input_gradient(images, 4, seed, out, d_images).ok());

    for (int i = 0; i < 4; ++i) {
      const std::span<const double> ref(
          expected_grad.data() + (static_cast<std::size_t>(g.grad_index) * 4 + i) * field, field);
      const std::span<const float> ours(d_images.data() + static_cast<std::size_t>(i) * field,
                                        field);
      const std::span<const float> image(images.data() + static_cast<std::size_t>(i) * field,
                                         field);
      const GradientComparison cmp = compare_input_gradient(*backend, *(*model)->network, image,
                                                            ours, ref, kGradientTolerance);
      const std::string at = entry.file + " image " + std::to_string(kGoldenGradImages[i]);
      INFO(at << ": " << cmp.describe());
      CHECK(cmp.ok(kGradientTolerance));
      worst_grad.update(cmp.rel_l2, at);
      if (cmp.kink_checked) {
        ++kink_pairs;
        worst_outside.update(cmp.rel_l2_outside, at + " [" + cmp.kinks + "]");
      } else {
        worst_clean.update(cmp.rel_l2, at);
      }

      const double r = expected_resp[static_cast<std::size_t>(g.grad_index) * 4 + i];
      INFO("response ours " << out[i] << ", ref " << r);
      CHECK(scaled_error(out[i], r) <= kForwardTolerance);
      worst_resp.update(scaled_error(out[i], r), at);
    }
  }
  // Kinks are rounding accidents: a handful at most. Many would mean a systematic error.
  CHECK(kink_pairs <= 4);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << std::scientific << std::setprecision(3)
            << "golden input gradients (12 models x 4 images, tolerance " << kGradientTolerance
            << "): worst ||g-ref||/||ref|| = " << worst_clean.error << " at " << worst_clean.where
            << " over the " << 48 - kink_pairs << " pairs without ReLU kinks; " << kink_pairs
            << " pair(s) with a float32-undecidable ReLU (worst whole-field " << worst_grad.error
            << " at " << worst_grad.where << ", worst outside the kink footprint "
            << worst_outside.error << " at " << worst_outside.where
            << "); worst response |ours-ref|/max(1,|ref|) = " << worst_resp.error << " at "
            << worst_resp.where << std::defaultfloat << ", " << std::fixed << std::setprecision(1)
            << seconds << " s" << std::defaultfloat << std::endl;
}

}  // namespace stimloop::test
