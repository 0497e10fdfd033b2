// The F(4, 5) input and output transforms (winograd_f4x5.h) on 16 lanes, factored, for the
// AVX-512 layer-0 kernel (conv2d_winograd_avx512.cpp). Include only from files compiled with
// -mavx512f.
#pragma once

#include <immintrin.h>

#include "kernels/cpu/winograd_f4x5.h"

namespace stimloop::cpu::avx512 {

// V[j][0 .. 7] = B^T d for 16 tiles at once, d[l] = the tiles' l-th inputs. B^T factored into the
// halves its paired rows share: rows 1 and 2 are E + O and E - O with E from d2, d4, d6 and O from
// d1, d3, d5, and so are rows 3/4 and 5/6 (the points +-p).
inline void input_transform(const __m512 d[winograd::kPoints], __m512 v[winograd::kPoints]) {
  const auto c = [](float x) { return _mm512_set1_ps(x); };
  v[0] = _mm512_fmadd_ps(c(21.0f / 4), _mm512_sub_ps(d[4], d[2]), _mm512_sub_ps(d[0], d[6]));
  v[7] = _mm512_fmadd_ps(c(21.0f / 4), _mm512_sub_ps(d[3], d[5]), _mm512_sub_ps(d[7], d[1]));
  const __m512 e1 = _mm512_fmadd_ps(c(-17.0f / 4), d[4], _mm512_add_ps(d[2], d[6]));
  const __m512 o1 = _mm512_fmadd_ps(c(-17.0f / 4), d[3], _mm512_add_ps(d[1], d[5]));
  v[1] = _mm512_add_ps(e1, o1);
  v[2] = _mm512_sub_ps(e1, o1);
  const __m512 e3 = _mm512_fmadd_ps(c(1.0f / 4), d[2], _mm512_fmadd_ps(c(-5.0f / 4), d[4], d[6]));
  const __m512 o3 = _mm512_fmadd_ps(c(1.0f / 2), d[1],
                                    _mm512_fmadd_ps(c(-5.0f / 2), d[3], _mm512_add_ps(d[5], d[5])));
  v[3] = _mm512_add_ps(e3, o3);
  v[4] = _mm512_sub_ps(e3, o3);
  const __m512 e5 = _mm512_fmadd_ps(c(4.0f), d[2], _mm512_fmadd_ps(c(-5.0f), d[4], d[6]));
  const __m512 o5 = _mm512_fmadd_ps(
      c(2.0f), d[1], _mm512_fmadd_ps(c(-5.0f / 2), d[3], _mm512_mul_ps(c(0.5f), d[5])));
  v[5] = _mm512_add_ps(e5, o5);
  v[6] = _mm512_sub_ps(e5, o5);
}

// y[0 .. 3] = A^T m, factored as the input transform: a, b are the sum and difference of the
// products at the points +-1, s2, d2 those at +-2, s5, d5 those at +-1/2.
inline void output_transform(const __m512 m[winograd::kPoints], __m512 y[winograd::kOutputs]) {
  const auto c = [](float x) { return _mm512_set1_ps(x); };
  const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
  const __m512 s2 = _mm512_add_ps(m[3], m[4]), d2 = _mm512_sub_ps(m[3], m[4]);
  const __m512 s5 = _mm512_add_ps(m[5], m[6]), d5 = _mm512_sub_ps(m[5], m[6]);
  y[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), _mm512_add_ps(s2, s5));
  y[1] = _mm512_fmadd_ps(c(0.5f), d5, _mm512_fmadd_ps(c(2.0f), d2, b));
  y[2] = _mm512_fmadd_ps(c(0.25f), s5, _mm512_fmadd_ps(c(4.0f), s2, a));
  y[3] = _mm512_add_ps(_mm512_fmadd_ps(c(0.125f), d5, _mm512_fmadd_ps(c(8.0f), d2, b)), m[7]);
}

}  // namespace stimloop::cpu::avx512
