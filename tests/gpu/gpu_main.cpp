// GPU tests: run only where a usable CUDA device exists; elsewhere exit 77, which ctest reports
// as skipped (Catch2 v2 has no SKIP()).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "kernels/device_info.h"

int main(int argc, char** argv) {
  const stimloop::DeviceInfo device = stimloop::probe_device();
  if (!device.available) {
    std::printf("SKIPPED (GPU tests): %s\n", device.reason.c_str());
    return 77;
  }
  std::printf("GPU: %s (sm_%d, %d SMs)\n", device.name.c_str(), device.compute_capability,
              device.multiprocessors);
  return Catch::Session().run(argc, argv);
}
