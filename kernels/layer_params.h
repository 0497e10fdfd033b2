// Parameter structs of the three ops every published compact model reduces to once BatchNorm is
// folded, ReLU fused and Flatten+Dense seen as a 1x1 convolution over a 1x1 image. Plain data,
// compiled by g++ and nvcc alike. All tensors are channels-last (N, H, W, C), float32.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define STIMLOOP_HOST_DEVICE __host__ __device__
#define STIMLOOP_FORCE_INLINE __forceinline__
#else
#define STIMLOOP_HOST_DEVICE
#define STIMLOOP_FORCE_INLINE inline
#endif

namespace stimloop {

enum class LayerKind : int {
  kConv2D = 0,     // dense k_h x k_w convolution; weights (k_h, k_w, in_c, out_c)
  kDepthwise = 1,  // per-channel k_h x k_w convolution, out_c == in_c; weights (k_h, k_w, c)
  kPointwise = 2,  // 1x1 convolution = per-pixel matmul; weights (in_c, out_c)
};

const char* layer_kind_name(LayerKind kind);

struct LayerParams {
  LayerKind kind = LayerKind::kConv2D;
  int in_h = 0, in_w = 0, in_c = 0;
  int out_h = 0, out_w = 0, out_c = 0;
  int k_h = 1, k_w = 1;
  int stride_h = 1, stride_w = 1;
  // Zero padding before the first row/column; TensorFlow's 'same' puts any odd extra pixel after,
  // which never needs storing: reads past the input are simply skipped.
  int pad_top = 0, pad_left = 0;
  bool has_bias = true;
  bool relu = false;  // ReLU fused into the op's output

  STIMLOOP_HOST_DEVICE std::int64_t in_size() const { return std::int64_t{in_h} * in_w * in_c; }
  STIMLOOP_HOST_DEVICE std::int64_t out_size() const { return std::int64_t{out_h} * out_w * out_c; }
  std::int64_t weight_count() const;
  std::int64_t bias_count() const { return has_bias ? out_c : 0; }
  std::int64_t macs() const;  // multiply-accumulates per image
};

// Tap geometry along one axis, shared by the CPU and CUDA kernels. Forward: the input coordinate
// that tap k of output o reads, or -1 when it falls in the padding.
STIMLOOP_HOST_DEVICE inline int input_of_tap(int o, int k, int stride, int pad, int in) {
  const int i = o * stride - pad + k;
  return i >= 0 && i < in ? i : -1;
}
// Backward (gather form): the output coordinate whose tap k read input i, or -1 when none did.
STIMLOOP_HOST_DEVICE inline int output_of_tap(int i, int k, int stride, int pad, int out) {
  const int t = i + pad - k;  // = o * stride
  // Stride 1 (layer 0, the late depthwise layers) without the integer division, which costs
  // the GPU's per-term gathers some twenty instructions.
  if (stride == 1) return t >= 0 && t < out ? t : -1;
  if (t < 0 || t % stride != 0) return -1;
  const int o = t / stride;
  return o < out ? o : -1;
}

// Output size and leading pad of one spatial axis, exactly as TensorFlow computes them.
struct AxisGeometry {
  int out = 0;
  int pad_before = 0;
};
AxisGeometry same_padding(int in, int kernel, int stride);
AxisGeometry valid_padding(int in, int kernel, int stride);

}  // namespace stimloop
