// Measured GPU rates for the arithmetic floor (gpu_peak.cu).
#pragma once

#include <string>

namespace stimloop::bench {

struct GpuPeak {
  std::string name;
  double fma_per_s = 0;    // float32 fused multiply-adds per second (CUDA cores)
  double bytes_per_s = 0;  // device memory, bytes read + written per second
};

GpuPeak measure_gpu_peak();

}  // namespace stimloop::bench
