// stimloop-bench-gpu: whole cowley2026 runs on the GPU (kernels/device_synthesis.h), stimloop's
// kernels against cuDNN's on the same card, in one process:
//   (b) one 1000-step preferred stimulus of the median compact model: wall time, also through
//       SynthesisRun (the server's path: one step per call, best values read back each step) and
//       on the host loop over the CUDA backend (the path before device synthesis);
//   (c) all 219 compact models, one stimulus each, 1000 steps, as one grouped run;
// and the floor: multiply-accumulates per step over the measured FP32 FMA rate, and an estimate
// of the bytes each step moves over the measured bandwidth. Forward throughput (a) is
// stimloop-bench --backend all. Times include setup and reading the 8-bit results back; "run"
// is the steps alone. cuDNN's (c) runs --cudnn-steps steps (one launch per model and layer: slow)
// and is scaled to --steps, which the table says. --step picks the custom kernels' step: the
// CUDA graph of layered launches, the persistent kernel (STIMLOOP_CUDA_STEP=persistent: one
// cooperative launch per run, a grid barrier between phases; backend "cuda-persistent"), or both.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "bench/gpu_peak.h"
#include "bench/v4_data.h"
#include "kernels/backend.h"
#include "models/demo_model.h"
#include "models/keras_import.h"
#include "models/model.h"
#include "server/synthesis/rng.h"
#include "server/synthesis/synthesis_run.h"

namespace {

using Clock = std::chrono::steady_clock;
using stimloop::Network;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
  int steps = 1000;
  int cudnn_steps = 20;
  int host_steps = 100;
  int models = 219;
  std::string only;           // "b" or "c": that custom-kernel run alone (for a profiler), else all
  std::string step = "both";  // graph, persistent or both (the custom kernels' step)
  std::string json_path;
};

std::vector<double> noise_images(const Network& net, std::uint64_t seed) {
  stimloop::synthesis::Rng rng(seed);
  std::vector<double> x(net.input_size());
  for (std::size_t j = 0; j < x.size(); ++j) {
    x[j] = rng.uniform() * 50.0 + 128.0 - stimloop::kV4ChannelMeans[j % 3];
  }
  return x;
}

// Bytes one forward + backward + update of one image moves at least (each tensor read or
// written once per use; weights once).
double bytes_per_step(const Network& net) {
  double b = 0;
  for (const auto& layer : net.layers) {
    const double in = layer.params.in_size(), out = layer.params.out_size();
    const double w = layer.params.weight_count();
    b += 4 * (in + out + w);        // forward: read input and weights, write output
    b += 4 * (out + out + in + w);  // backward: read d_out, the ReLU mask, weights; write d_in
  }
  const double size = net.input_size();
  b += size * (4 + 8 + 8 + 8 + 8 + 4);  // update: gradient, x, scratch (both passes), input
  return b;
}

struct Run {
  std::string what, backend, description;
  int steps_timed = 0, steps_reported = 0;
  double setup_s = 0, run_s = 0, total_s = 0;  // total: setup + steps + 8-bit readback
  double floor_fma_s = 0, floor_bytes_s = 0;
  double median_response = 0;
  std::vector<std::pair<std::string, double>> profile;  // ms per step, by launch
};

constexpr int kProfileSteps = 20;

// STIMLOOP_CUDA_STEP for one run (kernels/cuda/device_synthesis.cu reads it at start).
class ScopedStepMode {
 public:
  explicit ScopedStepMode(const std::string& mode) {
    setenv("STIMLOOP_CUDA_STEP", mode.c_str(), 1);
  }
  ~ScopedStepMode() { unsetenv("STIMLOOP_CUDA_STEP"); }
  ScopedStepMode(const ScopedStepMode&) = delete;
  ScopedStepMode& operator=(const ScopedStepMode&) = delete;
};

Run device_run(const std::string& what, stimloop::Backend& backend,
               const std::vector<std::shared_ptr<const Network>>& nets, int steps,
               int reported_steps, const stimloop::bench::GpuPeak& peak,
               const std::string& step_mode = "graph") {
  const ScopedStepMode mode(step_mode);
  Run r;
  r.what = what;
  r.backend = backend.name() + (step_mode == "persistent" ? "-persistent" : "");
  r.steps_timed = steps;
  r.steps_reported = reported_steps;
  std::vector<std::unique_ptr<stimloop::ResidentNetwork>> resident;
  std::vector<std::vector<double>> images;
  double macs = 0, bytes = 0;
  for (std::size_t i = 0; i < nets.size(); ++i) {
    auto up = backend.upload(nets[i]);
    if (!up.ok()) throw std::runtime_error(up.status().to_string());
    resident.push_back(std::move(*up));
    images.push_back(noise_images(*nets[i], i));
    macs += 2.0 * double(nets[i]->macs());
    bytes += bytes_per_step(*nets[i]);
  }
  stimloop::Cowley2026Settings settings;
  settings.means = stimloop::kV4ChannelMeans;
  std::vector<stimloop::SynthesisTarget> targets;
  for (std::size_t i = 0; i < nets.size(); ++i) {
    targets.push_back({resident[i].get(), 0, 1.0, 0.0, 1, images[i]});
  }
  {  // warm-up: module loading, cuDNN's first calls, graph instantiation paths
    auto warm = backend.start_cowley2026(settings, targets);
    if (!warm.ok()) throw std::runtime_error(warm.status().to_string());
    if (auto s = (*warm)->run(std::min(steps, 60)); !s.ok())
      throw std::runtime_error(s.to_string());
  }
  const auto t0 = Clock::now();
  auto run = backend.start_cowley2026(settings, targets);
  if (!run.ok()) throw std::runtime_error(run.status().to_string());
  r.setup_s = seconds_since(t0);
  r.description = (*run)->description();
  const auto t1 = Clock::now();
  if (auto s = (*run)->run(steps); !s.ok()) throw std::runtime_error(s.to_string());
  r.run_s = seconds_since(t1);
  std::vector<std::uint8_t> pixels;
  if (auto s = (*run)->best_rgb8(pixels); !s.ok()) throw std::runtime_error(s.to_string());
  r.total_s = seconds_since(t0);
  std::vector<double> values, responses;
  std::vector<std::uint8_t> has_best;
  if (auto s = (*run)->best(values, responses, has_best); !s.ok()) {
    throw std::runtime_error(s.to_string());
  }
  std::sort(responses.begin(), responses.end());
  r.median_response = responses[responses.size() / 2];
  if (backend.name() == "cuda") {  // where a step's time goes (cuDNN's launches are its own)
    auto profile = (*run)->profile(kProfileSteps);
    if (!profile.ok()) throw std::runtime_error(profile.status().to_string());
    for (auto& [label, ms] : *profile) r.profile.emplace_back(label, ms / kProfileSteps);
  }
  const double blur_factor = 1.0 + 1.0 / 50.0;  // the extra evaluation every 50 steps
  r.floor_fma_s = reported_steps * macs * blur_factor / peak.fma_per_s;
  r.floor_bytes_s = reported_steps * bytes * blur_factor / peak.bytes_per_s;
  return r;
}

// SynthesisRun (the CLI's and the server's entry, one step per call): on the device loop with
// the best values read back after every step (device_loop), or the host loop: per-step host round
// trips and host image ops.
Run synthesis_run(stimloop::Backend& backend, std::shared_ptr<const Network> net, int steps,
                  int reported_steps, bool device_loop) {
  stimloop::synthesis::SynthesisRequest request;
  request.steps = steps;
  Run r;
  r.what = device_loop ? "(b) SynthesisRun, device loop" : "(b) SynthesisRun, host loop";
  r.backend = backend.name();
  r.steps_timed = steps;
  r.steps_reported = reported_steps;
  r.description = device_loop ? "one step per call, best values read back every step"
                              : "image ops on the host, network on the backend";
  const auto t0 = Clock::now();
  auto run = stimloop::synthesis::SynthesisRun::create(request, stimloop::kV4ChannelMeans, backend,
                                                       net, nullptr, device_loop);
  if (!run.ok()) throw std::runtime_error(run.status().to_string());
  r.setup_s = seconds_since(t0);
  const auto t1 = Clock::now();
  auto result = stimloop::synthesis::run_synthesis(**run, {});
  if (!result.ok()) throw std::runtime_error(result.status().to_string());
  r.run_s = seconds_since(t1);
  r.total_s = seconds_since(t0);
  r.median_response = result->stimuli[0].response;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"stimloop-bench-gpu: whole cowley2026 runs on the GPU, custom kernels vs cuDNN"};
  app.add_option("--steps", opt.steps, "Steps per stimulus")->check(CLI::Range(1, 100000));
  app.add_option("--cudnn-steps", opt.cudnn_steps, "Steps of cuDNN's 219-model run (scaled)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--host-steps", opt.host_steps, "Steps of the host-loop reference (scaled)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--models", opt.models, "Compact models in the (c) run")
      ->check(CLI::Range(1, 219));
  app.add_option("--only", opt.only,
                 "Run just (b) or (c) on the custom kernels, e.g. under a profiler")
      ->check(CLI::IsMember({"b", "c"}));
  app.add_option("--step", opt.step,
                 "The custom kernels' step: graph (layered launches), persistent (one kernel), "
                 "or both")
      ->check(CLI::IsMember({"graph", "persistent", "both"}));
  app.add_option("--json", opt.json_path, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  std::vector<std::string> step_modes;
  if (opt.step != "persistent") step_modes.push_back("graph");
  if (opt.step != "graph") step_modes.push_back("persistent");

  auto cuda = stimloop::make_cuda_backend();
  if (!cuda.ok()) {
    std::printf("SKIPPED (stimloop-bench-gpu): %s\n", cuda.status().message().c_str());
    return 77;
  }
  auto cudnn = stimloop::make_cudnn_backend();
  const auto peak = stimloop::bench::measure_gpu_peak();
  std::printf("GPU %s: measured %.1f TFMA/s float32 (%.1f TFLOP/s), %.2f TB/s device memory\n",
              peak.name.c_str(), peak.fma_per_s / 1e12, 2 * peak.fma_per_s / 1e12,
              peak.bytes_per_s / 1e12);

  const std::string data = stimloop::bench::find_v4_data("golden/models_list.txt");
  std::vector<std::shared_ptr<const Network>> compact;
  std::shared_ptr<const Network> median;
  std::string median_name = "demo";
  if (data.empty()) {
    std::printf("published data not found (set STIMLOOP_V4_DATA): (b) on the demo model, no (c)\n");
    median = stimloop::demo_model()->network;
  } else {
    const auto rows = stimloop::bench::compact_model_rows(data);
    median_name = stimloop::bench::median_mac_file(rows);
    for (std::size_t i = 0; i < rows.size() && int(i) < opt.models; ++i) {
      auto model = stimloop::load_keras_model(data + "/compact_models/" + rows[i].second);
      if (!model.ok()) {
        std::cerr << model.status().to_string() << "\n";
        return 1;
      }
      compact.push_back((*model)->network);
      if (rows[i].second == median_name) median = (*model)->network;
    }
    if (!median) {
      auto model = stimloop::load_keras_model(data + "/compact_models/" + median_name);
      if (!model.ok()) return 1;
      median = (*model)->network;
    }
  }

  std::vector<Run> runs;
  try {
    const std::string b_what = "(b) one stimulus, " + median_name;
    const std::string c_what = "(c) " + std::to_string(compact.size()) + " models x 1 stimulus";
    const bool all = opt.only.empty();
    if (all || opt.only == "b") {
      for (const std::string& mode : step_modes) {
        runs.push_back(device_run(b_what, **cuda, {median}, opt.steps, opt.steps, peak, mode));
      }
    }
    if (all && cudnn.ok()) {
      runs.push_back(device_run(b_what, **cudnn, {median}, opt.steps, opt.steps, peak));
    }
    if (all) {
      runs.push_back(synthesis_run(**cuda, median, opt.steps, opt.steps, true));
      runs.push_back(synthesis_run(**cuda, median, opt.host_steps, opt.steps, false));
    }
    if (!compact.empty() && (all || opt.only == "c")) {
      for (const std::string& mode : step_modes) {
        runs.push_back(device_run(c_what, **cuda, compact, opt.steps, opt.steps, peak, mode));
      }
      if (all && cudnn.ok()) {
        runs.push_back(device_run(c_what, **cudnn, compact, opt.cudnn_steps, opt.steps, peak));
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "stimloop-bench-gpu: " << e.what() << "\n";
    return 1;
  }
  if (!cudnn.ok()) std::printf("no cuDNN: %s\n", cudnn.status().message().c_str());

  std::printf(
      "\n| case | backend | steps timed | setup s | run s | total s | total s for %d steps "
      "| us/step | floor s (FMA / bytes) | median response |\n",
      opt.steps);
  std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n");
  nlohmann::json j;
  j["gpu"] = peak.name;
  j["fma_per_s"] = peak.fma_per_s;
  j["bytes_per_s"] = peak.bytes_per_s;
  j["steps"] = opt.steps;
  for (const Run& r : runs) {
    const double scale = double(r.steps_reported) / r.steps_timed;
    const double scaled_total = r.setup_s + r.run_s * scale + (r.total_s - r.setup_s - r.run_s);
    std::printf("| %s | %s | %d | %.3f | %.4f | %.4f | %.4f%s | %.1f | %.4f / %.4f | %.3f |\n",
                r.what.c_str(), r.backend.c_str(), r.steps_timed, r.setup_s, r.run_s, r.total_s,
                scaled_total, scale != 1.0 ? " (scaled)" : "", 1e6 * r.run_s / r.steps_timed,
                r.floor_fma_s, r.floor_bytes_s, r.median_response);
    j["runs"].push_back({{"case", r.what},
                         {"backend", r.backend},
                         {"description", r.description},
                         {"steps_timed", r.steps_timed},
                         {"setup_s", r.setup_s},
                         {"run_s", r.run_s},
                         {"total_s", r.total_s},
                         {"total_s_scaled", scaled_total},
                         {"us_per_step", 1e6 * r.run_s / r.steps_timed},
                         {"floor_fma_s", r.floor_fma_s},
                         {"floor_bytes_s", r.floor_bytes_s},
                         {"median_response", r.median_response},
                         {"profile_ms_per_step", r.profile}});
  }
  for (const Run& r : runs) {
    std::printf("\n%s [%s]: %s\n", r.what.c_str(), r.backend.c_str(), r.description.c_str());
    if (r.profile.empty()) continue;
    std::printf(
        "  launch by launch, ms per step (mean of %d steps run without a graph; the "
        "persistent kernel: phase by phase, from block 0's clock after each barrier):\n",
        kProfileSteps);
    double total = 0;
    for (const auto& [label, ms] : r.profile) {
      std::printf("  %9.4f  %s\n", ms, label.c_str());
      total += ms;
    }
    std::printf("  %9.4f  total\n", total);
  }
  if (!opt.json_path.empty()) std::ofstream(opt.json_path) << j.dump(2) << "\n";
  return 0;
}
