// Helpers shared by the tests of the vectorised CPU kernels against the plain loops
// (test_ops_fast.cpp: AVX2, test_ops_avx512.cpp: AVX-512).
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/layer_params.h"
#include "tests/support/reference_network.h"

namespace stimloop::test {

struct ConvShape {
  int h, w, in_c, out_c, k, stride;
  bool same = true;  // TensorFlow 'same' padding, else 'valid'
};

inline LayerParams conv_params(const ConvShape& c) {
  LayerParams p;
  p.kind = LayerKind::kConv2D;
  p.in_h = c.h, p.in_w = c.w, p.in_c = c.in_c, p.out_c = c.out_c;
  p.k_h = p.k_w = c.k;
  p.stride_h = p.stride_w = c.stride;
  const AxisGeometry gy =
      c.same ? same_padding(c.h, c.k, c.stride) : valid_padding(c.h, c.k, c.stride);
  const AxisGeometry gx =
      c.same ? same_padding(c.w, c.k, c.stride) : valid_padding(c.w, c.k, c.stride);
  p.out_h = gy.out, p.out_w = gx.out;
  p.pad_top = gy.pad_before, p.pad_left = gx.pad_before;
  return p;
}

inline LayerParams pointwise_params(int h, int w, int in_c, int out_c) {
  LayerParams p;
  p.kind = LayerKind::kPointwise;
  p.in_h = p.out_h = h, p.in_w = p.out_w = w;
  p.in_c = in_c, p.out_c = out_c;
  return p;
}

// Random operands of one op over n images: inputs in [-in_range, in_range], weights scaled by the
// fan-in (activations stay of order one through the op), bias and output gradient in [-1, 1].
struct OpOperands {
  std::vector<float> in, w, bias, d_out;
};
inline OpOperands random_operands(const LayerParams& p, int n, double in_range, std::mt19937& rng) {
  const int fan_in = p.kind == LayerKind::kDepthwise ? p.k_h * p.k_w : p.k_h * p.k_w * p.in_c;
  const double a = std::sqrt(3.0 / fan_in);
  OpOperands o;
  o.in = random_floats(n * p.in_size(), -in_range, in_range, rng);
  o.w = random_floats(p.weight_count(), -a, a, rng);
  o.bias = random_floats(p.out_c, -1, 1, rng);
  o.d_out = random_floats(n * p.out_size(), -1, 1, rng);
  return o;
}

// max |a - b| / max(1, max |b|): relative to the output's scale. A NaN in `a` (an element the
// kernel never wrote, the buffers start as NaN) fails it.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a[i]) - b[i]);
    if (std::isnan(d)) return INFINITY;
    diff = std::max(diff, d);
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

}  // namespace stimloop::test
