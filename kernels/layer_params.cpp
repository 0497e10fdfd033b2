#include "kernels/layer_params.h"

#include <algorithm>

namespace stimloop {

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv2D:
      return "conv2d";
    case LayerKind::kDepthwise:
      return "depthwise";
    case LayerKind::kPointwise:
      return "pointwise";
  }
  return "unknown";
}

std::int64_t LayerParams::weight_count() const {
  switch (kind) {
    case LayerKind::kConv2D:
      return std::int64_t{k_h} * k_w * in_c * out_c;
    case LayerKind::kDepthwise:
      return std::int64_t{k_h} * k_w * in_c;
    case LayerKind::kPointwise:
      return std::int64_t{in_c} * out_c;
  }
  return 0;
}

std::int64_t LayerParams::macs() const {
  const std::int64_t pixels = std::int64_t{out_h} * out_w;
  switch (kind) {
    case LayerKind::kConv2D:
      return pixels * k_h * k_w * in_c * out_c;
    case LayerKind::kDepthwise:
      return pixels * k_h * k_w * in_c;
    case LayerKind::kPointwise:
      return pixels * in_c * out_c;
  }
  return 0;
}

AxisGeometry same_padding(int in, int kernel, int stride) {
  AxisGeometry g;
  g.out = (in + stride - 1) / stride;
  const int pad_total = std::max((g.out - 1) * stride + kernel - in, 0);
  g.pad_before = pad_total / 2;
  return g;
}

AxisGeometry valid_padding(int in, int kernel, int stride) {
  AxisGeometry g;
  g.out = in >= kernel ? (in - kernel) / stride + 1 : 0;
  g.pad_before = 0;
  return g;
}

}  // namespace stimloop
