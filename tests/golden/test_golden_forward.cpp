// Golden forward tests: every published compact model (219) and shared compact model (8), run
// through the float32 CPU backend on the golden images (compact models: 32 of the 64 by default,
// all 64 with STIMLOOP_GOLDEN_FULL=1, see compact_image_indices; shared models: all 64), against
// the float64 reference responses in golden/ (an independent implementation of Keras semantics).
//
// Tolerance: |ours - ref| <= 1e-4 * max(1, |ref|). The reference is float64; we compute in
// float32 (BatchNorm folded into the weights, sums in a fixed order). A float32 dot product of
// length K carries a relative rounding error of order K * 2^-24 in the worst case and
// sqrt(K) * 2^-24 typically; layer0_conv sums 5*5*3 = 75 terms, the pointwise halves up to
// ~200, the Dense readout 28*28*c (up to ~4700) and the shared models' 28x28 spatial pool 784,
// and the errors of six to eight layers compound. Inputs are re-centered pixels of magnitude
// up to ~150 and responses spike counts of order 0.1-50, so errors of a few 1e-6 relative to
// max(1, |ref|) are expected. Measured worst case over all 219 compact models x 64 images:
// 4.1e-6 (compact_model_201025_neuron78, image 26); over the 8 shared models x 64 images x 219
// outputs: 2.9e-6. 1e-4 leaves a margin of ~25x while still catching any semantic slip: the
// BatchNorm-epsilon slip of the authors' PyTorch port moves responses by 0.5-1.3 % of their
// range, a padding or channel-order mistake by far more. Each check prints its worst case.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
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

constexpr double kForwardTolerance = 1e-4;  // see the top of the file
constexpr int kGoldenImages = 64;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void print_worst(const std::string& what, const Worst& worst, int checked, double seconds) {
  std::cout << "golden " << what << ": " << checked
            << " values, worst |ours-ref|/max(1,|ref|) = " << std::scientific
            << std::setprecision(3) << worst.error << std::defaultfloat << " at " << worst.where
            << " (tolerance " << kForwardTolerance << "), " << std::fixed << std::setprecision(1)
            << seconds << " s" << std::defaultfloat << std::endl;
}

// Images for the compact-model check. All 64 golden images at batch 64 for the 219 models took
// 6.8 minutes on the 2-core development machine (shared with other builds; the whole binary 8),
// too much beside the rest of the suite. By default the compact models see the 32 even-numbered
// golden images (16 from each source session) at batch 32 (whole binary: 3 minutes there), and
// STIMLOOP_GOLDEN_FULL=1 restores all 64 at batch 64. The shared models always see all 64.
bool golden_full() {
  const char* env = std::getenv("STIMLOOP_GOLDEN_FULL");
  return env != nullptr && std::string(env) == "1";
}

std::vector<int> compact_image_indices() {
  std::vector<int> indices;
  const int step = golden_full() ? 1 : 2;
  for (int k = 0; k < kGoldenImages; k += step) indices.push_back(k);
  return indices;
}

// Runs the compact models of one session (or all sessions when `session` is empty).
void check_compact_session(const std::string& session) {
  const std::string what = "compact forward" + (session.empty() ? "" : " " + session);
  const auto dir = v4_data_dir();
  if (!dir) {
    print_skip(what);
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto models = read_models_list(*dir);
  REQUIRE(models.ok());
  REQUIRE(models->size() == 219);
  const auto raw = read_golden_images(*dir, kGoldenImages);
  REQUIRE(raw.ok());
  const std::vector<int> chosen = compact_image_indices();
  const int n = static_cast<int>(chosen.size());
  std::vector<std::uint8_t> raw_chosen;
  for (int k : chosen) {
    const auto begin = raw->begin() + static_cast<std::ptrdiff_t>(k * kV4ImageBytes);
    raw_chosen.insert(raw_chosen.end(), begin, begin + static_cast<std::ptrdiff_t>(kV4ImageBytes));
  }
  const std::vector<float> images = recenter_rgb8(raw_chosen, kV4ChannelMeans);
  const auto ref = read_npy((fs::path(*dir) / "golden" / "compact_responses_f64.npy").string());
  REQUIRE(ref.ok());
  REQUIRE(ref->shape == std::vector<std::int64_t>{219, kGoldenImages});
  const std::vector<double> expected = ref->to_double();

  auto backend = make_cpu_backend();
  Worst worst;
  int checked = 0, model_count = 0;
  for (const auto& m : *models) {
    if (!session.empty() && m.session != session) continue;
    ++model_count;
    const std::string path = (fs::path(*dir) / "compact_models" / m.file).string();
    const auto model = load_keras_model(path);
    INFO(path);
    REQUIRE(model.ok());
    REQUIRE((*model)->info.num_outputs == 1);
    CHECK((*model)->info.filters == m.filters);
    CHECK((*model)->info.macs_per_image == m.macs);
    auto resident = backend->upload((*model)->network);
    REQUIRE(resident.ok());
    std::vector<float> out(static_cast<std::size_t>(n));
    REQUIRE((*resident)->forward(images, n, out).ok());

    Worst model_worst;
    for (int i = 0; i < n; ++i) {
      const int k = chosen[static_cast<std::size_t>(i)];
      const double r = expected[static_cast<std::size_t>(m.index) * kGoldenImages + k];
      const double e = scaled_error(out[i], r);
      std::ostringstream at;
      at << m.file << " image " << k << " (ours " << std::setprecision(9) << out[i] << ", ref " << r
         << ")";
      model_worst.update(e, at.str());
      ++checked;
    }
    INFO("worst: " << model_worst.where);
    CHECK(model_worst.error <= kForwardTolerance);
    worst.update(model_worst.error, model_worst.where);
  }
  REQUIRE(model_count > 0);
  const std::string images_text =
      golden_full() ? "all 64 golden images, STIMLOOP_GOLDEN_FULL=1"
                    : "the 32 even-numbered golden images; STIMLOOP_GOLDEN_FULL=1 for all 64";
  print_worst(what + " (" + std::to_string(model_count) + " models x " + std::to_string(n) +
                  " images: " + images_text + ")",
              worst, checked, seconds_since(t0));
}

}  // namespace

// One test case per session so that ctest can run them side by side and a failure names the
// session. The four together cover all 219 rows of models_list.txt.
TEST_CASE("compact models 190923 match float64 responses", "[golden]") {
  check_compact_session("190923");
}
TEST_CASE("compact models 201025 match float64 responses", "[golden]") {
  check_compact_session("201025");
}
TEST_CASE("compact models 210225 match float64 responses", "[golden]") {
  check_compact_session("210225");
}
TEST_CASE("compact models 211022 match float64 responses", "[golden]") {
  check_compact_session("211022");
}

TEST_CASE("every models_list row belongs to one of the four sessions", "[golden]") {
  const auto dir = v4_data_dir();
  if (!dir) {
    print_skip("golden models_list sessions");
    return;
  }
  const auto models = read_models_list(*dir);
  REQUIRE(models.ok());
  REQUIRE(models->size() == 219);
  int counts[4] = {0, 0, 0, 0};
  for (const auto& m : *models) {
    INFO(m.file);
    const char* sessions[4] = {"190923", "201025", "210225", "211022"};
    const auto it = std::find(std::begin(sessions), std::end(sessions), m.session);
    REQUIRE(it != std::end(sessions));
    ++counts[it - std::begin(sessions)];
    CHECK(m.file == "compact_model_" + m.session + "_neuron" + std::to_string(m.neuron) + ".keras");
  }
  CHECK(counts[0] == 33);
  CHECK(counts[1] == 89);
  CHECK(counts[2] == 55);
  CHECK(counts[3] == 42);
}

TEST_CASE("shared compact models match float64 responses", "[golden]") {
  const auto dir = v4_data_dir();
  if (!dir) {
    print_skip("golden shared forward");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto files = read_shared_models_list(*dir);
  REQUIRE(files.ok());
  REQUIRE(files->size() == 8);
  const auto raw = read_golden_images(*dir, kGoldenImages);
  REQUIRE(raw.ok());
  const std::vector<float> images = recenter_rgb8(*raw, kV4ChannelMeans);
  const auto ref = read_npy((fs::path(*dir) / "golden" / "shared_responses_f64.npy").string());
  REQUIRE(ref.ok());
  REQUIRE(ref->shape == std::vector<std::int64_t>{8, kGoldenImages, 219});
  const std::vector<double> expected = ref->to_double();

  auto backend = make_cpu_backend();
  Worst worst;
  int checked = 0;
  for (std::size_t j = 0; j < files->size(); ++j) {
    const std::string path = (fs::path(*dir) / "shared_compact_models" / (*files)[j]).string();
    INFO(path);
    const auto model = load_keras_model(path);
    REQUIRE(model.ok());
    REQUIRE((*model)->info.num_outputs == 219);
    auto resident = backend->upload((*model)->network);
    REQUIRE(resident.ok());
    std::vector<float> out(static_cast<std::size_t>(kGoldenImages) * 219);
    REQUIRE((*resident)->forward(images, kGoldenImages, out).ok());

    Worst model_worst;
    for (int k = 0; k < kGoldenImages; ++k) {
      for (int o = 0; o < 219; ++o) {
        const double r = expected[(j * kGoldenImages + k) * 219 + o];
        const double v = out[static_cast<std::size_t>(k) * 219 + o];
        const double e = scaled_error(v, r);
        if (e > model_worst.error || model_worst.where.empty()) {
          std::ostringstream at;
          at << (*files)[j] << " image " << k << " output " << o << " (ours "
             << std::setprecision(9) << v << ", ref " << r << ")";
          model_worst.update(e, at.str());
        }
        ++checked;
      }
    }
    INFO("worst: " << model_worst.where);
    CHECK(model_worst.error <= kForwardTolerance);
    worst.update(model_worst.error, model_worst.where);
  }
  print_worst("shared forward (8 models x 64 images x 219 outputs)", worst, checked,
              seconds_since(t0));
}

}  // namespace stimloop::test
