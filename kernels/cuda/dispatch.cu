// Dispatch on the op kind, so the backend's layer loop stays one line per direction.
#include "kernels/cuda/ops.h"

namespace stimloop::cuda {

Status layer_forward(const LayerParams& p, int n, const float* in, const float* w,
                     const float* bias, float* out, cudaStream_t stream) {
  switch (p.kind) {
    case LayerKind::kConv2D:
      return conv2d_forward(p, n, in, w, bias, out, stream);
    case LayerKind::kDepthwise:
      return depthwise_forward(p, n, in, w, bias, out, stream);
    case LayerKind::kPointwise:
      return pointwise_forward(p, n, in, w, bias, out, stream);
  }
  return internal_error("unknown layer kind");
}

Status layer_backward_input(const LayerParams& p, int n, const float* d_out, const float* relu_out,
                            const float* w, float* d_in, cudaStream_t stream) {
  switch (p.kind) {
    case LayerKind::kConv2D:
      return conv2d_backward_input(p, n, d_out, relu_out, w, d_in, stream);
    case LayerKind::kDepthwise:
      return depthwise_backward_input(p, n, d_out, relu_out, w, d_in, stream);
    case LayerKind::kPointwise:
      return pointwise_backward_input(p, n, d_out, relu_out, w, d_in, stream);
  }
  return internal_error("unknown layer kind");
}

}  // namespace stimloop::cuda
