// stimloop-bench: forward and forward + input-gradient throughput of one model, at batch 1 (the
// synthesis loop of one stimulus) and batch 64 (a screening batch), on the CPU (all cores) and,
// with --backend cuda or all, on the GPU in the same process. GPU calls include the copies of the
// images in and the outputs/gradients out.
//
// A plain std::chrono harness: one warm-up call, then repeated calls until both --min-reps and
// --min-time are reached (or --max-reps), reporting the median time per call, which shrugs off
// the occasional slow repetition on a shared machine. Effective GMAC/s counts the model's
// multiply-accumulates per image once for a forward pass and twice for forward + input gradient
// (the backward pass to the input costs as many MACs as the forward; no weight gradients).
//
// Model: --model PATH (a .keras file) or --model demo; by default the median-MAC compact model
// of golden/models_list.txt in $STIMLOOP_V4_DATA or ../shared/v4, else the built-in demo model.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/v4_data.h"
#include "kernels/backend.h"
#include "models/demo_model.h"
#include "models/keras_import.h"

namespace fs = std::filesystem;
using stimloop::Model;

namespace {

struct Options {
  std::string model;  // path, "demo", or empty for the default
  bool json = false;
  int min_reps = 5;
  int max_reps = 1000;
  double min_time_s = 1.0;
  std::vector<int> batches = {1, 64};
  std::string backends = "cpu";  // cpu, cuda, cudnn, or all (every backend this machine has)
};

struct Result {
  std::string backend;
  std::string pass;  // "forward" or "forward+gradient"
  int batch = 0;
  int reps = 0;
  double median_call_ms = 0, min_call_ms = 0;
  double ms_per_image = 0, images_per_s = 0, gmac_per_s = 0;
};

template <typename F>
std::vector<double> time_calls(F&& call, const Options& opt) {
  call();  // warm-up: allocates the workspace, faults the pages in
  std::vector<double> ms;
  double total = 0.0;
  while (static_cast<int>(ms.size()) < opt.max_reps &&
         (static_cast<int>(ms.size()) < opt.min_reps || total < opt.min_time_s)) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ms.push_back(1e3 * s);
    total += s;
  }
  return ms;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run(const Options& opt) {
  // Choose and load the model.
  std::shared_ptr<const Model> model;
  std::string model_arg = opt.model;
  std::string chosen_because = "given by --model";
  if (model_arg.empty()) {
    const std::string data = stimloop::bench::find_v4_data("golden/models_list.txt");
    const std::string file =
        data.empty() ? std::string()
                     : stimloop::bench::median_mac_file(stimloop::bench::compact_model_rows(data));
    const std::string path =
        file.empty() ? std::string() : (fs::path(data) / "compact_models" / file).string();
    if (!path.empty()) {
      model_arg = path;
      chosen_because = "median-MAC compact model of " + data + "/golden/models_list.txt";
    } else {
      model_arg = "demo";
      chosen_because = "published V4 data not found (set STIMLOOP_V4_DATA): built-in demo";
    }
  }
  if (model_arg == "demo") {
    model = stimloop::demo_model();
  } else {
    auto loaded = stimloop::load_keras_model(model_arg);
    if (!loaded.ok()) {
      std::cerr << "stimloop-bench: " << loaded.status().to_string() << "\n";
      return 1;
    }
    model = *loaded;
  }

  std::vector<std::unique_ptr<stimloop::Backend>> backends;
  if (opt.backends == "cpu" || opt.backends == "all") {
    backends.push_back(stimloop::make_cpu_backend());
  }
  for (const std::string gpu : {"cuda", "cudnn", "cudnn-tf32"}) {
    // TF32 only when asked for by name: "all" compares float32 implementations.
    if (opt.backends != gpu && (opt.backends != "all" || gpu == "cudnn-tf32")) continue;
    auto backend = stimloop::make_backend(gpu);
    if (backend.ok()) {
      backends.push_back(std::move(*backend));
    } else if (opt.backends == gpu) {
      std::cerr << "stimloop-bench: " << backend.status().to_string() << "\n";
      return 1;
    } else {
      std::cerr << "stimloop-bench: no " << gpu << " backend (" << backend.status().message()
                << ")\n";
    }
  }
  const std::int64_t in_size = model->network->input_size();
  const std::int64_t outputs = model->network->num_outputs();
  const double macs = static_cast<double>(model->network->macs());

  // Deterministic re-centered random pixels, the same for every run.
  const int max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());
  std::vector<float> images(static_cast<std::size_t>(max_batch * in_size));
  std::mt19937 rng(12345);
  for (std::size_t i = 0; i < images.size(); ++i) {
    images[i] = static_cast<float>(rng() >> 24) - model->channel_means[i % 3];
  }

  std::vector<Result> results;
  for (auto& backend : backends) {
    auto uploaded = backend->upload(model->network);
    if (!uploaded.ok()) {
      std::cerr << "stimloop-bench: " << uploaded.status().to_string() << "\n";
      return 1;
    }
    stimloop::ResidentNetwork& net = **uploaded;
    for (int batch : opt.batches) {
      const std::size_t in_n = static_cast<std::size_t>(batch * in_size);
      const std::size_t out_n = static_cast<std::size_t>(batch * outputs);
      const std::span<const float> x(images.data(), in_n);
      std::vector<float> out(out_n), d_images(in_n);
      std::vector<float> seed(out_n, 0.0f);
      for (int i = 0; i < batch; ++i)
        seed[static_cast<std::size_t>(i * outputs)] = 1.0f;  // output 0
      bool failed = false;
      auto forward = [&] { failed |= !net.forward(x, batch, out).ok(); };
      auto gradient = [&] { failed |= !net.input_gradient(x, batch, seed, out, d_images).ok(); };
      for (int pass = 0; pass < 2; ++pass) {
        const std::vector<double> ms =
            pass == 0 ? time_calls(forward, opt) : time_calls(gradient, opt);
        if (failed) {
          std::cerr << "stimloop-bench: the backend rejected a batch of " << batch << "\n";
          return 1;
        }
        Result r;
        r.backend = backend->name();
        r.pass = pass == 0 ? "forward" : "forward+gradient";
        r.batch = batch;
        r.reps = static_cast<int>(ms.size());
        r.median_call_ms = median(ms);
        r.min_call_ms = *std::min_element(ms.begin(), ms.end());
        r.ms_per_image = r.median_call_ms / batch;
        r.images_per_s = 1e3 / r.ms_per_image;
        r.gmac_per_s = (pass == 0 ? 1.0 : 2.0) * macs * r.images_per_s / 1e9;
        results.push_back(r);
      }
    }
  }

  const int threads = omp_get_max_threads();
  if (opt.json) {
    nlohmann::json j;
    j["model"] = {{"id", model->info.id},
                  {"source", model->info.source},
                  {"demo", model->info.demo},
                  {"chosen", chosen_because},
                  {"macs_per_image", model->info.macs_per_image},
                  {"parameters", model->info.parameters},
                  {"outputs", outputs}};
    j["threads"] = threads;
    j["statistic"] = "median over repetitions after one warm-up call";
    for (const auto& r : results) {
      j["results"].push_back({{"backend", r.backend},
                              {"pass", r.pass},
                              {"batch", r.batch},
                              {"repetitions", r.reps},
                              {"median_ms_per_call", r.median_call_ms},
                              {"min_ms_per_call", r.min_call_ms},
                              {"ms_per_image", r.ms_per_image},
                              {"images_per_s", r.images_per_s},
                              {"effective_gmac_per_s", r.gmac_per_s}});
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }

  std::printf("model    %s (%s)\n", model->info.id.c_str(), chosen_because.c_str());
  std::printf("         %.1f M MACs/image, %lld parameters, %lld output(s)\n", macs / 1e6,
              static_cast<long long>(model->info.parameters), static_cast<long long>(outputs));
  std::printf("cpu      %d OpenMP thread(s); median of repetitions after one warm-up\n\n", threads);
  std::printf("%-7s %-17s %6s %5s %12s %12s %10s %9s\n", "backend", "pass", "batch", "reps",
              "ms/call", "ms/image", "images/s", "GMAC/s");
  for (const auto& r : results) {
    std::printf("%-7s %-17s %6d %5d %12.3f %12.3f %10.1f %9.2f\n", r.backend.c_str(),
                r.pass.c_str(), r.batch, r.reps, r.median_call_ms, r.ms_per_image, r.images_per_s,
                r.gmac_per_s);
  }
  std::printf("\nGMAC/s counts the forward MACs once for forward, twice for forward+gradient.\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"stimloop-bench: forward and input-gradient throughput of one model per backend"};
  app.add_option("--backend", opt.backends,
                 "cpu, cuda, cudnn, cudnn-tf32, or all (every float32 backend available)")
      ->check(CLI::IsMember({"cpu", "cuda", "cudnn", "cudnn-tf32", "all"}))
      ->capture_default_str();
  app.add_option("--model", opt.model,
                 "A .keras file, or 'demo' (default: the median-MAC compact model of "
                 "$STIMLOOP_V4_DATA or ../shared/v4, else the demo)");
  app.add_flag("--json", opt.json, "Print the results as JSON");
  app.add_option("--min-reps", opt.min_reps, "Timed repetitions at least")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-reps", opt.max_reps, "Timed repetitions at most")
      ->check(CLI::PositiveNumber);
  app.add_option("--min-time", opt.min_time_s, "Seconds of timed calls at least, per measurement")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", opt.batches, "Batch sizes to measure (default: 1 64)")
      ->check(CLI::Range(1, stimloop::kMaxBatch));
  CLI11_PARSE(app, argc, argv);
  if (opt.max_reps < opt.min_reps) opt.max_reps = opt.min_reps;
  if (opt.batches.empty()) opt.batches = {1, 64};
  return run(opt);
}
