// Whole networks: the CUDA backend against the CPU backend, forward and input gradient, on the
// demo model and, when the published data is present, on every compact and shared model with the
// golden images. Tolerance 1e-4 relative (the CUDA backend issue's bar): forward |gpu - cpu| <=
// 1e-4 * max(1, |cpu|); gradient relative L2 error <= 1e-4. Both are float32 with different
// summation orders; the measured worst case is printed.
//
// The input gradient is discontinuous at ReLU kinks: a unit whose pre-activation lies within
// float32 rounding (~1e-6) of zero may be on either side in two correct float32 implementations
// (and in float64), and flipping one layer-1 unit moved a compact model's gradient by 2.7 %
// (compact_model_210225_neuron27, golden image 1: pre-activation 1.2e-7). Such (model, image)
// pairs are ill-posed for a 1e-4 comparison: they are detected by their smallest |pre-activation|
// (< 1e-4, a hundred times the rounding error), counted, reported, and must stay rare.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "common/npy.h"
#include "kernels/backend.h"
#include "kernels/cpu/ops.h"
#include "models/demo_model.h"
#include "models/keras_import.h"
#include "models/preprocess.h"
#include "tests/support/test_data.h"

namespace {

struct Errors {
  double forward = 0, gradient = 0;
  int near_kink = 0;  // images skipped in the gradient comparison (see the top of the file)
};

constexpr double kKinkMargin = 1e-4;
// Even across a flipped ReLU unit the gradient stays close (measured worst 2.7 %).
constexpr double kKinkError = 0.2;

// The smallest |pre-activation| over every ReLU of the network for one image (float32 CPU ops).
double min_relu_margin(const stimloop::Network& net, const float* image) {
  std::vector<float> in(image, image + net.input_size()), out;
  double margin = 1e30;
  for (const auto& layer : net.layers) {
    stimloop::LayerParams p = layer.params;
    const bool relu = p.relu;
    p.relu = false;
    out.resize(p.out_size());
    stimloop::cpu::layer_forward(p, 1, in.data(), layer.weights.data(),
                                 layer.bias.empty() ? nullptr : layer.bias.data(), out.data());
    if (relu) {
      for (float& v : out) {
        margin = std::min(margin, double(std::abs(v)));
        v = std::max(v, 0.0f);
      }
    }
    in.swap(out);
  }
  return margin;
}

Errors compare_backends(const stimloop::Network& net_ref,
                        std::shared_ptr<const stimloop::Network> net,
                        const std::vector<float>& images, int n,
                        const std::string& backend = "cuda") {
  auto cpu = stimloop::make_cpu_backend();
  auto gpu = stimloop::make_backend(backend);
  REQUIRE(gpu.ok());
  auto cpu_net = cpu->upload(net);
  auto gpu_net = (*gpu)->upload(net);
  REQUIRE(cpu_net.ok());
  REQUIRE(gpu_net.ok());
  const int outputs = static_cast<int>(net_ref.num_outputs());
  std::vector<float> y_cpu(n * outputs), y_gpu(n * outputs);
  REQUIRE((*cpu_net)->forward(images, n, y_cpu).ok());
  REQUIRE((*gpu_net)->forward(images, n, y_gpu).ok());
  Errors e;
  for (std::size_t i = 0; i < y_cpu.size(); ++i) {
    REQUIRE(std::isfinite(y_gpu[i]));
    e.forward = std::max(e.forward,
                         std::abs(y_gpu[i] - y_cpu[i]) / std::max(1.0, std::abs(double(y_cpu[i]))));
  }
  // Gradient of output k = image index mod outputs (covers many outputs of a shared model).
  std::vector<float> seed(n * outputs, 0.0f);
  for (int i = 0; i < n; ++i) seed[i * outputs + (i * 37) % outputs] = 1.0f;
  std::vector<float> g_cpu(images.size()), g_gpu(images.size());
  REQUIRE((*cpu_net)->input_gradient(images, n, seed, y_cpu, g_cpu).ok());
  REQUIRE((*gpu_net)->input_gradient(images, n, seed, y_gpu, g_gpu).ok());
  const std::size_t per_image = images.size() / n;
  for (int i = 0; i < n; ++i) {
    double diff = 0, ref = 0;
    for (std::size_t j = i * per_image; j < (i + 1) * per_image; ++j) {
      REQUIRE(std::isfinite(g_gpu[j]));
      diff += double(g_gpu[j] - g_cpu[j]) * (g_gpu[j] - g_cpu[j]);
      ref += double(g_cpu[j]) * g_cpu[j];
    }
    if (ref == 0) continue;
    const double error = std::sqrt(diff / ref);
    if (error > 1e-4 && min_relu_margin(net_ref, images.data() + i * per_image) < kKinkMargin) {
      ++e.near_kink;
      CHECK(error <= kKinkError);  // a flipped unit moves the gradient; a wrong op ruins it
      continue;
    }
    e.gradient = std::max(e.gradient, error);
  }
  return e;
}

std::vector<float> golden_images(const std::string& data, int count) {
  auto raw = stimloop::read_npy(data + "/golden/images_raw_uint8.npy");
  REQUIRE(raw.ok());
  const std::size_t bytes = std::size_t(count) * 112 * 112 * 3;
  REQUIRE(raw->data.size() >= bytes);
  return stimloop::recenter_rgb8(std::span(raw->data.data(), bytes), stimloop::kV4ChannelMeans);
}

}  // namespace

TEST_CASE("CUDA backend matches the CPU backend on the demo model", "[gpu][models]") {
  const std::string backend = GENERATE("cuda", "cudnn");
  INFO("backend " << backend);
  auto model = stimloop::demo_model();
  std::vector<float> images(4 * model->network->input_size());
  for (std::size_t i = 0; i < images.size(); ++i) images[i] = float((i * 7919) % 255) - 120.0f;
  const Errors e = compare_backends(*model->network, model->network, images, 4, backend);
  CHECK(e.forward <= 1e-4);
  CHECK(e.gradient <= 1e-4);
}

TEST_CASE("CUDA backend matches the CPU backend on every published model",
          "[gpu][models][golden]") {
  const std::string backend = GENERATE("cuda", "cudnn");
  const auto data = stimloop::test::v4_data_dir();
  if (!data) {
    stimloop::test::print_skip("CUDA vs CPU on published models");
    return;
  }
  const int n = 8;
  const auto images = golden_images(*data, n);
  Errors worst;
  int count = 0, near_kink = 0;
  for (const char* dir : {"compact_models", "shared_compact_models"}) {
    for (const auto& entry : std::filesystem::directory_iterator(*data + "/" + dir)) {
      if (entry.path().extension() != ".keras") continue;
      auto model = stimloop::load_keras_model(entry.path().string());
      REQUIRE(model.ok());
      const Errors e = compare_backends(*(*model)->network, (*model)->network, images, n, backend);
      INFO(backend << " " << (*model)->info.id << " forward " << e.forward << " gradient "
                   << e.gradient);
      CHECK(e.forward <= 1e-4);
      CHECK(e.gradient <= 1e-4);
      worst.forward = std::max(worst.forward, e.forward);
      worst.gradient = std::max(worst.gradient, e.gradient);
      near_kink += e.near_kink;
      ++count;
    }
  }
  std::cout << backend << " vs CPU over " << count << " published models x " << n
            << " golden images: worst forward " << worst.forward << ", worst gradient rel L2 "
            << worst.gradient << "; " << near_kink << " of " << count * n
            << " gradients skipped as within " << kKinkMargin << " of a ReLU kink\n";
  CHECK(count == 227);
  // Ill-posed pairs must stay rare. How many cross 1e-4 depends on both sides' summation orders:
  // 79 of 1816 with the first CUDA kernels against the plain CPU loops, 140 (7.7 %) with the tiled
  // layer-0 kernels against the AVX2 CPU kernels, 82 for cuDNN (H200, 2026-11-27).
  CHECK(near_kink <= count * n / 10);
}

namespace {

// The worst |y - golden| / max(1, |golden|) of `backend`'s forward over the 219 compact models
// and the 64 golden images; -1 when the published data is absent.
double worst_forward_error_vs_golden(stimloop::Backend& backend, int* models) {
  const auto data = stimloop::test::v4_data_dir();
  if (!data) return -1;
  auto golden = stimloop::read_npy(*data + "/golden/compact_responses_f64.npy");
  REQUIRE(golden.ok());
  const auto ref = golden->to_double();  // (219, 64)
  std::ifstream list(*data + "/golden/models_list.txt");
  std::string line;
  const auto images = golden_images(*data, 64);
  double worst = 0;
  int row = 0;
  while (std::getline(list, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string index, session, neuron, file;
    fields >> index >> session >> neuron >> file;
    auto model = stimloop::load_keras_model(*data + "/compact_models/" + file);
    REQUIRE(model.ok());
    auto net = backend.upload((*model)->network);
    REQUIRE(net.ok());
    std::vector<float> y(64);
    REQUIRE((*net)->forward(images, 64, y).ok());
    for (int k = 0; k < 64; ++k) {
      const double r = ref[row * 64 + k];
      worst = std::max(worst, std::abs(y[k] - r) / std::max(1.0, std::abs(r)));
    }
    ++row;
  }
  *models = row;
  return worst;
}

}  // namespace

TEST_CASE("CUDA forward matches the float64 golden responses", "[gpu][models][golden]") {
  auto gpu = stimloop::make_cuda_backend();
  REQUIRE(gpu.ok());
  int models = 0;
  const double worst = worst_forward_error_vs_golden(**gpu, &models);
  if (worst < 0) {
    stimloop::test::print_skip("CUDA vs golden responses");
    return;
  }
  std::cout << "CUDA forward vs golden float64 over " << models << " models x 64 images: worst "
            << worst << "\n";
  CHECK(models == 219);
  CHECK(worst <= 1e-4);
}

// The TF32 option's error, reported as the issue asks (float32 stays the default). TF32 keeps 10
// of float32's 23 mantissa bits in the convolutions' inputs, so each product is off by up to
// ~5e-4 relative; the bound only catches a path that is broken, not merely less exact.
TEST_CASE("cuDNN with TF32: forward error against the float64 golden responses is reported",
          "[gpu][models][golden]") {
  auto tf32 = stimloop::make_cudnn_backend(/*tf32=*/true);
  if (!tf32.ok()) {
    stimloop::test::print_skip("cuDNN TF32 vs golden responses (" + tf32.status().message() + ")");
    return;
  }
  auto fp32 = stimloop::make_cudnn_backend();
  REQUIRE(fp32.ok());
  int models = 0, fp32_models = 0;
  const double worst = worst_forward_error_vs_golden(**tf32, &models);
  if (worst < 0) {
    stimloop::test::print_skip("cuDNN TF32 vs golden responses");
    return;
  }
  const double worst_fp32 = worst_forward_error_vs_golden(**fp32, &fp32_models);
  std::cout << "cuDNN forward vs golden float64 over " << models
            << " models x 64 images, worst |y - golden| / max(1, |golden|): TF32 " << worst
            << ", float32 " << worst_fp32 << "\n";
  CHECK(models == 219);
  CHECK(worst <= 5e-2);
}
