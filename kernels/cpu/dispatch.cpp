#include <algorithm>
#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/pointwise_few.h"

namespace stimloop::cpu {
namespace {

// A pointwise op is a 1x1 convolution with the same weight layout ([ci][co]), so the AVX2 (or
// AVX-512) convolution serves it when there are enough output channels to fill its 8 lanes (a
// Dense(1) readout keeps the plain single-output dot product).
bool pointwise_as_conv(const LayerParams& p) { return use_avx2() && p.out_c >= 8; }
// The AVX-512 one even for a few output channels (a compact model's 62 -> 3 layer 2): a mostly
// empty 16-lane block still beats the plain loop's short inner loop many times over.
bool pointwise_as_avx512_conv(const LayerParams& p) { return use_avx512() && p.out_c >= 2; }

// grad = 0 where act <= 0, as a select over restrict pointers so that it vectorises.
void mask_where_not_positive(const float* __restrict act, std::int64_t total,
                             float* __restrict grad) {
#pragma omp simd
  for (std::int64_t i = 0; i < total; ++i) grad[i] = act[i] <= 0.0f ? 0.0f : grad[i];
}

LayerParams conv_view(const LayerParams& p) {
  LayerParams conv = p;
  conv.kind = LayerKind::kConv2D;
  return conv;
}

}  // namespace

void layer_forward(const LayerParams& p, int n, const float* in, const float* w, const float* bias,
                   float* out) {
  switch (p.kind) {
    case LayerKind::kConv2D:
#if defined(STIMLOOP_HAVE_AVX512_KERNELS)
      if (use_avx512()) {
        conv2d_forward_avx512(p, n, in, w, bias, out);  // ReLU fused
        return;
      }
#endif
#if defined(STIMLOOP_HAVE_AVX2_KERNELS)
      if (use_avx2()) {
        conv2d_forward_avx2(p, n, in, w, bias, out);
        break;
      }
#endif
      conv2d_forward(p, n, in, w, bias, out);
      break;
    case LayerKind::kDepthwise:
#if defined(STIMLOOP_HAVE_AVX512_KERNELS)
      if (use_avx512() && p.k_h <= kMaxTaps) {
        depthwise_forward_avx512(p, n, in, w, bias, out);
        break;
      }
#endif
#if defined(STIMLOOP_HAVE_AVX2_KERNELS)
      if (use_avx2() && p.k_h <= kMaxTaps) {
        depthwise_forward_avx2(p, n, in, w, bias, out);
        break;
      }
#endif
      depthwise_forward(p, n, in, w, bias, out);
      break;
    case LayerKind::kPointwise:
#if defined(STIMLOOP_HAVE_AVX512_KERNELS)
      if (pointwise_as_avx512_conv(p)) {
        conv2d_forward_avx512(conv_view(p), n, in, w, bias, out);  // ReLU fused
        return;
      }
#endif
#if defined(STIMLOOP_HAVE_AVX2_KERNELS)
      if (pointwise_as_conv(p)) {
        conv2d_forward_avx2(conv_view(p), n, in, w, bias, out);
        break;
      }
      if (use_avx2() && pointwise_few_outputs(p)) {
        pointwise_forward_few(p, n, in, w, bias, out);
        break;
      }
#endif
      pointwise_forward(p, n, in, w, bias, out);
      break;
  }
  if (p.relu) {
    const std::int64_t total = std::int64_t{n} * p.out_size();
    for (std::int64_t i = 0; i < total; ++i) out[i] = std::max(out[i], 0.0f);
  }
}

void layer_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                          float* d_in, const float* in_relu) {
  switch (p.kind) {
    case LayerKind::kConv2D:
#if defined(STIMLOOP_HAVE_AVX512_KERNELS)
      if (use_avx512()) {
        conv2d_backward_input_avx512(p, n, d_out, w, d_in);
        break;
      }
#endif
#if defined(STIMLOOP_HAVE_AVX2_KERNELS)
      if (use_avx2()) {
        conv2d_backward_input_avx2(p, n, d_out, w, d_in);
        break;
      }
#endif
      conv2d_backward_input(p, n, d_out, w, d_in);
      break;
    case LayerKind::kDepthwise:
#if defined(STIMLOOP_HAVE_AVX512_KERNELS)
      if (use_avx512() && p.k_h <= kMaxTaps && p.k_w <= kMaxTaps) {
        depthwise_backward_input_avx512(p, n, d_out, w, d_in, in_relu);
        return;  // masked as it stored
      }
#endif
#if defined(STIMLOOP_HAVE_AVX2_KERNELS)
      if (use_avx2() && p.k_h <= kMaxTaps && p.k_w <= kMaxTaps) {
        depthwise_backward_input_avx2(p, n, d_out, w, d_in, in_relu);
        return;  // masked as it stored
      }
#endif
      depthwise_backward_input(p, n, d_out, w, d_in, in_relu);
      return;
    case LayerKind::kPointwise:
#if defined(STIMLOOP_HAVE_AVX512_KERNELS)
      if (pointwise_as_avx512_conv(p)) {
        conv2d_backward_input_avx512(conv_view(p), n, d_out, w, d_in);
        break;
      }
#endif
#if defined(STIMLOOP_HAVE_AVX2_KERNELS)
      if (pointwise_as_conv(p)) {
        conv2d_backward_input_avx2(conv_view(p), n, d_out, w, d_in);
        break;
      }
      if (use_avx2() && pointwise_few_outputs(p)) {
        pointwise_backward_input_few(p, n, d_out, w, d_in);
        break;
      }
#endif
      pointwise_backward_input(p, n, d_out, w, d_in);
      break;
  }
  if (in_relu != nullptr) {
    mask_where_not_positive(in_relu, std::int64_t{n} * p.in_size(), d_in);
  }
}

}  // namespace stimloop::cpu
