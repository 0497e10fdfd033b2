// Layer 0 through Winograd F(4, 5) (winograd_forward.h) on 16 lanes. Compiled with -mavx512f and
// called only after the run-time check (cpu_features.h).
#include <immintrin.h>

#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/winograd_forward.h"

namespace stimloop::cpu::avx512 {

void conv_forward_winograd(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out) {
  winograd::forward<Lanes512>(p, n, in, w, bias, p.relu, out);
}

}  // namespace stimloop::cpu::avx512
