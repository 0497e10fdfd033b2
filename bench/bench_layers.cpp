// stimloop-bench-layers: CPU time of every layer of one model, forward and backward to the input,
// with the kernels this machine dispatches to (STIMLOOP_CPU_KERNELS=reference: the plain loops;
// =avx2: no AVX-512).
// CPU time (CLOCK_PROCESS_CPUTIME_ID), not wall time, so a shared machine disturbs it less; run
// with OMP_NUM_THREADS=1 for single-core kernel speed. --wall times wall-clock instead: what
// threads gain (CPU time counts every thread's).
//
//   OMP_NUM_THREADS=1 stimloop-bench-layers MODEL.keras [--batch 4] [--reps 20] [--wall]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "models/demo_model.h"
#include "models/keras_import.h"

namespace {

bool wall_clock = false;

double now_ms() {
  timespec ts{};
  clock_gettime(wall_clock ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace stimloop;
  CLI::App app{"stimloop-bench-layers: CPU time per layer, forward and backward"};
  std::string path = "demo";
  int n = 4, reps = 20;
  app.add_option("model", path, "A .keras file, or demo")->capture_default_str();
  app.add_option("--batch", n, "Images per call")->capture_default_str();
  app.add_option("--reps", reps, "Calls timed per layer")->capture_default_str();
  app.add_flag("--wall", wall_clock, "Wall-clock time instead of the process's CPU time");
  CLI11_PARSE(app, argc, argv);

  auto model = path == "demo" ? StatusOr<std::shared_ptr<const Model>>(demo_model())
                              : load_keras_model(path);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().to_string().c_str());
    return 1;
  }
  const Network& net = *(*model)->network;
  std::printf("model %s, batch %d, kernels %s; %s ms per image\n", (*model)->info.id.c_str(), n,
              cpu::use_avx512() ? "avx512"
              : cpu::use_avx2() ? "avx2"
                                : "reference",
              wall_clock ? "wall" : "CPU");
  std::printf("%-24s %12s %10s %8s %10s %8s\n", "layer", "MACs/image", "forward", "GMAC/s",
              "backward", "GMAC/s");
  std::vector<float> in(static_cast<std::size_t>(net.input_size()) * n, 1.0f);
  double total_f = 0, total_b = 0;
  for (const auto& layer : net.layers) {
    const LayerParams& p = layer.params;
    std::vector<float> out(static_cast<std::size_t>(p.out_size()) * n);
    std::vector<float> d_in(static_cast<std::size_t>(p.in_size()) * n);
    const float* bias = layer.bias.empty() ? nullptr : layer.bias.data();
    double t0 = now_ms();
    for (int r = 0; r < reps; ++r) {
      cpu::layer_forward(p, n, in.data(), layer.weights.data(), bias, out.data());
    }
    const double f = (now_ms() - t0) / reps / n;
    t0 = now_ms();
    for (int r = 0; r < reps; ++r) {
      cpu::layer_backward_input(p, n, out.data(), layer.weights.data(), d_in.data());
    }
    const double b = (now_ms() - t0) / reps / n;
    total_f += f;
    total_b += b;
    std::printf("%-24s %12lld %10.3f %8.1f %10.3f %8.1f\n", layer.name.c_str(),
                static_cast<long long>(p.macs()), f, p.macs() / f * 1e-6, b, p.macs() / b * 1e-6);
    in.swap(out);
  }
  std::printf("%-24s %12lld %10.3f %8s %10.3f\n", "total", static_cast<long long>(net.macs()),
              total_f, "", total_b);
  return 0;
}
