#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "kernels/device_info.h"

TEST_CASE("device probe reports the GPU it found", "[gpu]") {
  const auto device = stimloop::probe_device();
  CHECK(device.cuda_compiled);
  CHECK(device.compute_capability >= 80);
  CHECK(device.memory_bytes > 0);
}

TEST_CASE("DeviceBuffer round-trips host data", "[gpu]") {
  std::vector<float> host(1000), back(1000, -1.0f);
  std::iota(host.begin(), host.end(), 0.5f);
  stimloop::cuda::DeviceBuffer<float> buffer;
  REQUIRE(buffer.allocate(host.size()).ok());
  REQUIRE(buffer.upload(host.data(), host.size(), nullptr).ok());
  REQUIRE(buffer.download(back.data(), back.size(), nullptr).ok());
  REQUIRE(cudaStreamSynchronize(nullptr) == cudaSuccess);
  CHECK(back == host);
  CHECK_FALSE(buffer.upload(host.data(), host.size() + 1, nullptr).ok());
}
