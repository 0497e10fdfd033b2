// Internal interface of the AVX-512 convolution (conv2d_avx512.cpp), shared with its backward
// pass (conv2d_avx512_backward.cpp), which runs some shapes as a forward convolution over the
// output gradient. Include only from files compiled with -mavx512f.
#pragma once

#include <cstdint>

#include "kernels/layer_params.h"

namespace stimloop::cpu::avx512 {

// Weights for conv_forward_packed: [k_h][k_w][in_c][packed_width(out_c)], zeros in the padding
// lanes, so every 16-lane weight load is a full one.
int packed_width(int out_c);

// out[b,oy,ox,co] = bias[co] (or 0 without bias) + the k_h x k_w convolution of `in` with the
// geometry of p (p.kind is ignored), then max(0, .) if p.relu, weights already packed. Needs
// p.k_h <= kMaxTaps.
void conv_forward_packed(const LayerParams& p, int n, const float* in, const float* packed,
                         const float* bias, float* out);

}  // namespace stimloop::cpu::avx512
