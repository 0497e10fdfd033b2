// The deliberately odd op shapes of the CPU op tests (test_ops.cpp), shared with the tests of
// the CUDA kernels' per-value arithmetic (test_element_ops.cpp): sizes that are not multiples of
// anything, strides that skip input rows, 'valid' windows that never read the last rows, kernels
// larger than the image, rectangular kernels and strides, and the two pointwise paths.
#pragma once

#include <algorithm>
#include <cmath>

#include "kernels/element_ops.h"
#include "kernels/layer_params.h"

namespace stimloop::test {

struct OpCase {
  const char* label;
  LayerKind kind;
  int h, w, in_c, out_c;
  int k_h, k_w, stride_h, stride_w;
  bool same;
};

inline LayerParams make_params(const OpCase& c, bool bias, bool relu) {
  LayerParams p;
  p.kind = c.kind;
  p.in_h = c.h, p.in_w = c.w, p.in_c = c.in_c;
  p.out_c = c.kind == LayerKind::kDepthwise ? c.in_c : c.out_c;
  p.has_bias = bias;
  p.relu = relu;
  if (c.kind == LayerKind::kPointwise) {
    p.out_h = c.h, p.out_w = c.w;
    return p;
  }
  p.k_h = c.k_h, p.k_w = c.k_w;
  p.stride_h = c.stride_h, p.stride_w = c.stride_w;
  const AxisGeometry gy =
      c.same ? same_padding(c.h, c.k_h, c.stride_h) : valid_padding(c.h, c.k_h, c.stride_h);
  const AxisGeometry gx =
      c.same ? same_padding(c.w, c.k_w, c.stride_w) : valid_padding(c.w, c.k_w, c.stride_w);
  p.out_h = gy.out, p.out_w = gx.out;
  p.pad_top = gy.pad_before, p.pad_left = gx.pad_before;
  return p;
}

// Terms summed into one output (forward) and, at most, into one input gradient (backward).
inline int forward_terms(const LayerParams& p) { return element_ops::forward_terms(p); }
inline int backward_terms(const LayerParams& p) {
  const int taps =
      ((p.k_h + p.stride_h - 1) / p.stride_h) * ((p.k_w + p.stride_w - 1) / p.stride_w);
  switch (p.kind) {
    case LayerKind::kConv2D:
      return taps * p.out_c;
    case LayerKind::kDepthwise:
      return taps;
    case LayerKind::kPointwise:
      return p.out_c;
  }
  return 1;
}

// Tolerance. Inputs and output gradients are uniform(-1, 1) and weights uniform(-a, a) with
// a = sqrt(3 / fan_in), so every result is a sum of K terms of typical size 1/sqrt(K) and is
// itself O(1). The reference is evaluated in double on the very same float values, so the only
// difference is float rounding in the kernel's accumulation, which grows like sqrt(K) roundings
// of 2^-24 (6e-8) of the running sum. Measured worst cases (all cases, batch 1 and 3): 1.6e-6
// for the 225-term 5x5x9 convolution, 3.5e-6 for the 3519-term Dense, below 6e-7 for every
// backward pass. atol = 2e-5 * max(1, sqrt(K) / 8) is 20-40x above those and still ~1e4x below
// what one misplaced tap, channel or padding offset produces (a term of size 1/sqrt(K), ~0.03
// or more). rtol = 1e-5 covers the occasional large output.
inline double atol_for(int terms) {
  return 2e-5 * std::max(1.0, std::sqrt(static_cast<double>(terms)) / 8);
}
constexpr double kRtol = 1e-5;

inline const OpCase kCases[] = {
    // Dense convolution, 9 -> 5 channels on a 17 x 23 image.
    {"conv 5x5 s1 same", LayerKind::kConv2D, 17, 23, 9, 5, 5, 5, 1, 1, true},
    {"conv 5x5 s2 same", LayerKind::kConv2D, 17, 23, 9, 5, 5, 5, 2, 2, true},
    {"conv 3x3 s2 valid", LayerKind::kConv2D, 17, 23, 9, 5, 3, 3, 2, 2, false},
    {"conv 4x4 s3 valid (last row/col unread)", LayerKind::kConv2D, 17, 23, 9, 5, 4, 4, 3, 3,
     false},
    {"conv 1x1 s2 valid (odd rows unread)", LayerKind::kConv2D, 17, 23, 9, 5, 1, 1, 2, 2, false},
    {"conv 1x1 s1 same", LayerKind::kConv2D, 17, 23, 9, 5, 1, 1, 1, 1, true},
    {"conv 5x3 stride 2x1 same", LayerKind::kConv2D, 17, 23, 9, 5, 5, 3, 2, 1, true},
    {"conv 5x5 s2 same on 16x16 (pad 1 before, 2 after)", LayerKind::kConv2D, 16, 16, 9, 5, 5, 5, 2,
     2, true},
    {"conv 5x5 s2 same, kernel larger than 4x3 image", LayerKind::kConv2D, 4, 3, 9, 5, 5, 5, 2, 2,
     true},
    {"conv 3x3 s1 same, 1 input channel", LayerKind::kConv2D, 17, 23, 1, 5, 3, 3, 1, 1, true},
    // Channel counts around the AVX2 kernels' blocking (8 lanes, 3 blocks a pass, 4 input
    // channels at a time backward): layer 0's 3 -> 46, exact blocks, one block plus one lane.
    {"conv 5x5 s1 same 3->46 (layer 0)", LayerKind::kConv2D, 13, 19, 3, 46, 5, 5, 1, 1, true},
    {"conv 3x3 s2 same 5->25", LayerKind::kConv2D, 13, 19, 5, 25, 3, 3, 2, 2, true},
    {"conv 5x5 s1 valid 4->8", LayerKind::kConv2D, 13, 19, 4, 8, 5, 5, 1, 1, false},
    {"conv 2x2 s1 same 7->24 on 3x5", LayerKind::kConv2D, 3, 5, 7, 24, 2, 2, 1, 1, true},
    // Depthwise, 9 channels.
    {"depthwise 5x5 s1 same", LayerKind::kDepthwise, 17, 23, 9, 9, 5, 5, 1, 1, true},
    {"depthwise 5x5 s2 same", LayerKind::kDepthwise, 17, 23, 9, 9, 5, 5, 2, 2, true},
    {"depthwise 3x3 s2 valid", LayerKind::kDepthwise, 17, 23, 9, 9, 3, 3, 2, 2, false},
    {"depthwise 4x4 s3 valid", LayerKind::kDepthwise, 17, 23, 9, 9, 4, 4, 3, 3, false},
    {"depthwise 3x5 stride 1x2 same", LayerKind::kDepthwise, 17, 23, 9, 9, 3, 5, 1, 2, true},
    {"depthwise 17x23 valid (spatial readout to 1x1)", LayerKind::kDepthwise, 17, 23, 9, 9, 17, 23,
     1, 1, false},
    {"depthwise 5x5 s2 same on 16x16", LayerKind::kDepthwise, 16, 16, 9, 9, 5, 5, 2, 2, true},
    {"depthwise 5x5 s2 same, kernel larger than 4x3 image", LayerKind::kDepthwise, 4, 3, 9, 9, 5, 5,
     2, 2, true},
    // Pointwise (1x1 convolution) and Flatten + Dense.
    {"pointwise 9->5", LayerKind::kPointwise, 17, 23, 9, 5, 1, 1, 1, 1, false},
    {"pointwise 9->1 (single-output path)", LayerKind::kPointwise, 17, 23, 9, 1, 1, 1, 1, 1, false},
    {"pointwise 1->9", LayerKind::kPointwise, 17, 23, 1, 9, 1, 1, 1, 1, false},
    {"pointwise 46->62 (a compact layer 1)", LayerKind::kPointwise, 13, 19, 46, 62, 1, 1, 1, 1,
     false},
    {"dense 300->24", LayerKind::kPointwise, 1, 1, 300, 24, 1, 1, 1, 1, false},
    {"dense 3519->5", LayerKind::kPointwise, 1, 1, 17 * 23 * 9, 5, 1, 1, 1, 1, false},
    {"dense 3519->1 (single-output path)", LayerKind::kPointwise, 1, 1, 17 * 23 * 9, 1, 1, 1, 1, 1,
     false},
};

}  // namespace stimloop::test
