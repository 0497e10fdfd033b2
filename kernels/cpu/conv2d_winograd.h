// Layer 0 (winograd::forward_applies, winograd_f4x5.h) through Winograd F(4, 5), one entry per
// instruction set (winograd_forward.h has the kernel). Same arguments as the direct convolution
// of that instruction set; results differ from it by float rounding. Call each only when
// cpu_features.h says the processor has its instructions.
#pragma once

#include "kernels/layer_params.h"

namespace stimloop::cpu {

namespace avx512 {
// Applies p.relu itself, as conv2d_forward_avx512 does (conv2d_winograd_avx512.cpp).
void conv_forward_winograd(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out);
}  // namespace avx512

namespace avx2 {
// Leaves the ReLU to the caller, as conv2d_forward_avx2 does (conv2d_winograd_avx2.cpp).
void conv_forward_winograd(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out);
}  // namespace avx2

}  // namespace stimloop::cpu
