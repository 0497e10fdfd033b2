// peak-fma: the machine's measured peak float32 multiply-accumulate throughput on N threads, the
// denominator of the "arithmetic floor" that bench/compare_pytorch_cpu.py prints (a model's MACs
// over this rate: no implementation can run a forward pass faster).
//
// Each thread runs long chains of fused multiply-adds acc = acc * a + b on several independent
// accumulators (more than FMA latency x FMA pipes, so the pipes never wait on a result), all
// threads started together; throughput = FLOPs / wall time, best of --trials. Measured for every
// vector width the compiler was allowed (-march=native, see CMakeLists.txt): 256-bit AVX2 FMA,
// 512-bit AVX-512 FMA where the CPU has it (Zen 4 splits a 512-bit FMA in two, Zen 5 and Intel
// server cores do not, so it may or may not double the rate), and, for reference, 128-bit SSE
// multiply + add without FMA: the ceiling of code compiled for baseline x86-64 (no -march).
// The peak is the largest of them. 1 MAC = 2 FLOPs.
//
//   peak-fma [--threads N] [--seconds S] [--trials T] [--json]
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 12;  // independent accumulators per thread (>= 4-cycle latency x 2 pipes)

volatile float g_sink;  // keeps the accumulators alive so the loops cannot be optimized away

// One thread's work: `iters` rounds of kChains FMAs. Returns nothing; the sum goes to g_sink.
#if defined(__AVX512F__)
// Vectors are loaded from arrays: GCC 12's _mm512_set1_ps trips -Wuninitialized in its header.
__m512 splat512(float v) {
  float lanes[16];
  std::fill(lanes, lanes + 16, v);
  return _mm512_loadu_ps(lanes);
}

void run_avx512(long iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = splat512(1.0f + 0.01f * i);
  const __m512 a = splat512(0.999999f), b = splat512(1e-6f);  // acc stays near 1
  for (long t = 0; t < iters; ++t) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  float out[16];
  _mm512_storeu_ps(out, s);
  g_sink = out[0] + out[15];
}
#endif

#if defined(__FMA__) && defined(__AVX2__)
void run_avx2(long iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1.0f + 0.01f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
  for (long t = 0; t < iters; ++t) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  g_sink = out[0] + out[7];
}
#endif

// Baseline x86-64: separate multiply and add (no FMA: -ffp-contract=off keeps GCC from fusing
// them, as a build without -march would not have FMA to fuse into).
__attribute__((optimize("fp-contract=off"))) void run_sse(long iters) {
  __m128 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm_set1_ps(1.0f + 0.01f * i);
  const __m128 a = _mm_set1_ps(0.999999f), b = _mm_set1_ps(1e-6f);
  for (long t = 0; t < iters; ++t) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], a), b);
  }
  __m128 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm_add_ps(s, acc[i]);
  float out[4];
  _mm_storeu_ps(out, s);
  g_sink = out[0] + out[3];
}

struct Kernel {
  const char* name;
  int lanes;  // float32 lanes per vector
  void (*fn)(long);
};

// Wall seconds for `threads` threads each running fn(iters), released together.
double timed_run(const Kernel& k, int threads, long iters) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      k.fn(iters);
    });
  }
  while (ready.load() < threads) {
  }
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best GFLOP/s over `trials` runs of about `seconds` each (the iteration count is calibrated
// first on one short run, so slow and fast machines both get a meaningful duration).
double measure(const Kernel& k, int threads, double seconds, int trials) {
  long iters = 1 << 16;
  double s = timed_run(k, threads, iters);
  while (s < 0.05) {
    iters *= 4;
    s = timed_run(k, threads, iters);
  }
  iters = std::max(1L, static_cast<long>(iters * seconds / s));
  double best = 0.0;
  for (int t = 0; t < trials; ++t) {
    const double secs = timed_run(k, threads, iters);
    const double flops = 2.0 * k.lanes * kChains * static_cast<double>(iters) * threads;
    best = std::max(best, flops / secs / 1e9);
  }
  return best;
}

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

int main(int argc, char** argv) {
  int threads = default_threads();
  double seconds = 0.3;
  int trials = 5;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--json") {
      json = true;
    } else if (a == "--threads" && has_value) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--seconds" && has_value) {
      seconds = std::max(0.01, std::atof(argv[++i]));
    } else if (a == "--trials" && has_value) {
      trials = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: peak-fma [--threads N] [--seconds S] [--trials T] [--json]\n"
                   "  measured peak float32 FMA throughput on N threads (default: "
                   "$OMP_NUM_THREADS or all cores)\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }

  std::vector<Kernel> kernels;
  kernels.push_back({"sse_mul_add_128", 4, run_sse});
#if defined(__FMA__) && defined(__AVX2__)
  kernels.push_back({"avx2_fma_256", 8, run_avx2});
#endif
#if defined(__AVX512F__)
  kernels.push_back({"avx512_fma_512", 16, run_avx512});
#endif

  std::vector<double> gflops;
  for (const Kernel& k : kernels) gflops.push_back(measure(k, threads, seconds, trials));
  const auto best = std::max_element(gflops.begin(), gflops.end()) - gflops.begin();

  if (json) {
    std::printf("{\n  \"threads\": %d,\n  \"trials\": %d,\n  \"statistic\": \"best of trials\",\n",
                threads, trials);
    std::printf("  \"kernels\": {");
    for (std::size_t i = 0; i < kernels.size(); ++i) {
      std::printf("%s\n    \"%s\": {\"gflop_per_s\": %.2f, \"gmac_per_s\": %.2f}", i ? "," : "",
                  kernels[i].name, gflops[i], gflops[i] / 2);
    }
    std::printf(
        "\n  },\n  \"peak_kernel\": \"%s\",\n  \"peak_gflop_per_s\": %.2f,\n"
        "  \"peak_gmac_per_s\": %.2f\n}\n",
        kernels[best].name, gflops[best], gflops[best] / 2);
    return 0;
  }
  std::printf("peak float32 throughput, %d thread(s), best of %d trials\n", threads, trials);
  for (std::size_t i = 0; i < kernels.size(); ++i) {
    std::printf("  %-16s %9.1f GFLOP/s %9.1f GMAC/s\n", kernels[i].name, gflops[i], gflops[i] / 2);
  }
  std::printf("peak: %s, %.1f GFLOP/s = %.1f GMAC/s\n", kernels[best].name, gflops[best],
              gflops[best] / 2);
  return 0;
}
