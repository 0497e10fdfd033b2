// Helpers shared by the GPU op tests: random data, layer parameters as the published models
// build them (TensorFlow 'same' or 'valid' geometry), and copies to and from the device.
#pragma once

#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "kernels/layer_params.h"

namespace stimloop::test {

namespace cuda = stimloop::cuda;

inline std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float lo = -1,
                                        float hi = 1) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline LayerParams make_params(LayerKind kind, int h, int w, int cin, int cout, int k, int stride,
                               bool same, bool relu) {
  LayerParams p;
  p.kind = kind;
  p.in_h = h, p.in_w = w, p.in_c = cin;
  p.out_c = kind == LayerKind::kDepthwise ? cin : cout;
  p.k_h = p.k_w = kind == LayerKind::kPointwise ? 1 : k;
  p.stride_h = p.stride_w = kind == LayerKind::kPointwise ? 1 : stride;
  const auto gy = same ? stimloop::same_padding(h, p.k_h, p.stride_h)
                       : stimloop::valid_padding(h, p.k_h, p.stride_h);
  const auto gx = same ? stimloop::same_padding(w, p.k_w, p.stride_w)
                       : stimloop::valid_padding(w, p.k_w, p.stride_w);
  p.out_h = gy.out, p.out_w = gx.out;
  p.pad_top = gy.pad_before, p.pad_left = gx.pad_before;
  p.relu = relu;
  return p;
}

inline std::vector<float> to_host(const cuda::DeviceBuffer<float>& d) {
  std::vector<float> h(d.size());
  REQUIRE(d.download(h.data(), h.size(), nullptr).ok());
  REQUIRE(cudaStreamSynchronize(nullptr) == cudaSuccess);
  return h;
}

inline cuda::DeviceBuffer<float> to_device(const std::vector<float>& h) {
  cuda::DeviceBuffer<float> d;
  REQUIRE(d.allocate(h.size()).ok());
  if (!h.empty()) REQUIRE(d.upload(h.data(), h.size(), nullptr).ok());
  return d;
}

}  // namespace stimloop::test
