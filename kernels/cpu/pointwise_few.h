// Pointwise layers with few output channels: the pruned compact models' 3-filter layers (out_c
// below the convolution kernels' 8 lanes). The plain loops in pointwise.cpp run a 3-long inner
// loop per input channel and pixel, 0.8 GMAC/s here, a twentieth of the other layers; these
// vectorise along the input channels instead, against the weights transposed once per call.
// Compiled with the AVX2 kernels and called only when use_avx2() (the plain loops stay the
// reference); each output is computed by one thread in a fixed order.
#pragma once

#include "kernels/layer_params.h"

namespace stimloop::cpu {

// out_c in [2, 8): one output is a Dense readout (the plain loop's dot product is already
// vectorised), eight or more go to the convolution kernels.
bool pointwise_few_outputs(const LayerParams& p);

void pointwise_forward_few(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out);
void pointwise_backward_input_few(const LayerParams& p, int n, const float* d_out, const float* w,
                                  float* d_in);

}  // namespace stimloop::cpu
