// Layer 0 through Winograd F(4, 5) (winograd_forward.h) on 8 lanes, for processors with AVX2 and
// FMA but no AVX-512 (most laptops). Compiled with -mavx2 -mfma and called only after the
// run-time check (cpu_features.h).
#include <immintrin.h>

#include "kernels/cpu/avx2_lanes.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/winograd_forward.h"

namespace stimloop::cpu::avx2 {

void conv_forward_winograd(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out) {
  // No ReLU here: the AVX2 convolution leaves it to the dispatcher (dispatch.cpp).
  winograd::forward<Lanes256>(p, n, in, w, bias, /*relu=*/false, out);
}

}  // namespace stimloop::cpu::avx2
