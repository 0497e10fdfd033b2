// The GPU's measured float32 FMA rate and device-memory bandwidth: the denominators of the
// arithmetic floor stimloop-bench-gpu prints. FMA: every thread runs 8 independent chains of
// dependent FMAs (enough to hide the pipeline latency); bandwidth: a device-to-device copy,
// counting bytes read and written.
#include <cuda_runtime.h>

#include <algorithm>

#include "bench/gpu_peak.h"

namespace stimloop::bench {
namespace {

constexpr int kChains = 8;

__global__ void fma_kernel(int iterations, float seed, float* sink) {
  float a[kChains];
  for (int c = 0; c < kChains; ++c) a[c] = seed + threadIdx.x + c;
  const float m = 0.999999f, k = 1e-7f;
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) a[c] = fmaf(a[c], m, k);
  }
  float s = 0;
  for (int c = 0; c < kChains; ++c) s += a[c];
  if (s == 12345.0f) *sink = s;  // never true; keeps the chains alive
}

double time_ms(cudaEvent_t start, cudaEvent_t stop) {
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  return ms;
}

}  // namespace

GpuPeak measure_gpu_peak() {
  GpuPeak peak;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return peak;
  float* sink = nullptr;
  cudaMalloc(&sink, sizeof(float));
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  const int blocks = prop.multiProcessorCount * 8, threads = 256, iterations = 1 << 14;
  fma_kernel<<<blocks, threads>>>(iterations, 1.0f, sink);  // warm-up, clocks up
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    cudaEventRecord(start);
    fma_kernel<<<blocks, threads>>>(iterations, 1.0f, sink);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    best = std::min(best, time_ms(start, stop));
  }
  peak.fma_per_s = double(blocks) * threads * iterations * kChains / (best * 1e-3);

  const std::size_t bytes = std::size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) == cudaSuccess && cudaMalloc(&b, bytes) == cudaSuccess) {
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      cudaEventRecord(start);
      cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
      cudaEventRecord(stop);
      cudaEventSynchronize(stop);
      best = std::min(best, time_ms(start, stop));
    }
    peak.bytes_per_s = 2.0 * double(bytes) / (best * 1e-3);
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(sink);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  peak.name = prop.name;
  return peak;
}

}  // namespace stimloop::bench
