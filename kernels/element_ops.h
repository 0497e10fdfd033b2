// One output value of an op, forward or backward to the input, as a sum over its terms: the
// arithmetic of the straightforward CUDA kernels and of the persistent synthesis step
// (kernels/persistent_step.h), compiled by nvcc for the device and by g++ for the unit tests that
// compare it with the CPU reference (tests/unit/test_element_ops.cpp).
//
// Every sum can be split over `lanes` workers: worker `lane` adds the terms k with
// k % lanes == lane, in the order of the flat term index k (a conv's backward: k runs over the
// visited taps' channels, TapLaneCursor), and the workers' sums are added afterwards (a warp's
// shuffle tree on the GPU). lanes == 1 gives the plain loop, whose order of terms is the one the
// straightforward kernels have always used. Long sums -- the Dense readout's 2352 terms, layer 0's
// backward with 25 x F -- run split so that one value is not a chain of thousands of dependent
// FMAs.
//
// Indices are per op call: element i of `n` images, channels-last. The backward sums mask the
// output gradient by the op's own ReLU output when `relu_out` is given (d_pre = d_out where
// relu_out > 0).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/layer_params.h"

// Keeps nvcc from unrolling a loop whose unrolled loads, hoisted ahead, would not fit in the
// persistent kernel's 128 registers (g++ is left to its own choice).
#if defined(__CUDA_ARCH__)
#define STIMLOOP_DEVICE_NO_UNROLL _Pragma("unroll 1")
#else
#define STIMLOOP_DEVICE_NO_UNROLL
#endif

namespace stimloop::element_ops {

// Position of flat index i in an (n, h, w, c) channels-last tensor; 32-bit math where it fits
// (64-bit division is a long instruction sequence on the GPU).
struct NhwcPos {
  std::int64_t b;
  int y, x, c;
};
STIMLOOP_HOST_DEVICE inline NhwcPos unravel(std::int64_t i, int h, int w, int c) {
  NhwcPos pos;
  if (i <= 0x7fffffff) {
    int j = static_cast<int>(i);
    pos.c = j % c;
    j /= c;
    pos.x = j % w;
    j /= w;
    pos.y = j % h;
    pos.b = j / h;
    return pos;
  }
  pos.c = static_cast<int>(i % c);
  i /= c;
  pos.x = static_cast<int>(i % w);
  i /= w;
  pos.y = static_cast<int>(i % h);
  pos.b = i / h;
  return pos;
}

// Terms in one forward value (the length of the chain a single worker would run).
STIMLOOP_HOST_DEVICE inline int forward_terms(const LayerParams& p) {
  switch (p.kind) {
    case LayerKind::kConv2D:
      return p.k_h * p.k_w * p.in_c;
    case LayerKind::kDepthwise:
      return p.k_h * p.k_w;
    case LayerKind::kPointwise:
      return p.in_c;
  }
  return 0;
}
// Backward: the terms that can be non-zero in one input gradient, at most ceil(k / stride) taps
// an axis and never more than the output has (a 28 x 28 'valid' readout: one tap, not 784).
STIMLOOP_HOST_DEVICE inline int backward_terms(const LayerParams& p) {
  const int ty = (p.k_h + p.stride_h - 1) / p.stride_h, tx = (p.k_w + p.stride_w - 1) / p.stride_w;
  const int taps = (ty < p.out_h ? ty : p.out_h) * (tx < p.out_w ? tx : p.out_w);
  switch (p.kind) {
    case LayerKind::kConv2D:
      return taps * p.out_c;
    case LayerKind::kDepthwise:
      return taps;
    case LayerKind::kPointwise:
      return p.out_c;
  }
  return 0;
}

STIMLOOP_HOST_DEVICE inline int min_int(int a, int b) { return a < b ? a : b; }
STIMLOOP_HOST_DEVICE inline int max_int(int a, int b) { return a > b ? a : b; }
// ceil(v / 2) for any sign (integer division truncates toward zero).
STIMLOOP_HOST_DEVICE inline int ceil_half(int v) { return v >= 0 ? (v + 1) / 2 : -((-v) / 2); }

// Carry of a term cursor: `inner` ran past `n` (once or several times when lanes > n).
STIMLOOP_HOST_DEVICE inline void carry_taps(int& inner, int n, int& kx, int& ky, int k_w) {
  while (inner >= n) {
    inner -= n;
    if (++kx == k_w) {
      kx = 0;
      ++ky;
    }
  }
}

// The taps of a backward gather along one axis, ascending: those k that read input i, each with
// the output o it fed (o * stride = i + pad - k, 0 <= o < out). Visits only the taps of i's
// parity class: at stride 2 a 5-tap axis has 2 or 3, where testing all 5 cost a division each.
// One remainder and one division per axis; the output then falls by one a tap.
template <class Body>
STIMLOOP_HOST_DEVICE inline void for_each_gather_tap(int i, int k_n, int stride, int pad, int out,
                                                     Body&& body) {
  const int t = i + pad;  // >= 0
  const int k0 = t % stride;
  int o = (t - k0) / stride;
  for (int k = k0; k < k_n && o >= 0; k += stride, --o) {
    if (o < out) body(k, o);
  }
}

// The ReLU mask of a backward term: d_pre = d_out where the op's output is positive (a NaN
// output masks its term). One predicate for every backward sum, so their terms agree.
STIMLOOP_HOST_DEVICE inline bool relu_passes(const float* relu_out, std::int64_t g) {
  return relu_out == nullptr || relu_out[g] > 0.0f;
}

// A conv backward's split over lanes: the flat term index k runs over the visited taps' output
// channels, (tap, co), and lane `lane` takes k % lanes == lane. Within a tap that is a channel
// stride of `lanes` from a first channel that moves back by out_c % lanes a tap, so no lane sits
// idle while another runs a second pass (out_c = 46 over 32 lanes: 36 passes for 25 taps where a
// fixed first channel took 50).
struct TapLaneCursor {
  int first, shift, lanes;
  STIMLOOP_HOST_DEVICE TapLaneCursor(int lane, int lanes_, int out_c)
      : first(lane), shift(out_c % lanes_), lanes(lanes_) {}
  // The first channel of this lane in the current tap; moves on to the next tap.
  STIMLOOP_HOST_DEVICE int next_tap() {
    const int co = first;
    first -= shift;
    if (first < 0) first += lanes;
    return co;
  }
};

// Depthwise forward of one value, one worker: nested tap loops (the split form's flat cursor
// costs a carry and two bound tests a term). Terms in forward_sum's order.
STIMLOOP_HOST_DEVICE inline float depthwise_forward_whole(const LayerParams& p, const float* image,
                                                          const float* w, const NhwcPos& o,
                                                          float acc) {
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int iy = input_of_tap(o.y, ky, p.stride_h, p.pad_top, p.in_h);
    if (iy < 0) continue;
    const float* row = image + std::int64_t{iy} * p.in_w * p.in_c + o.c;
    const float* w_row = w + std::int64_t{ky} * p.k_w * p.in_c + o.c;
    for (int kx = 0; kx < p.k_w; ++kx) {
      const int ix = input_of_tap(o.x, kx, p.stride_w, p.pad_left, p.in_w);
      if (ix < 0) continue;
      acc = fmaf(row[std::int64_t{ix} * p.in_c], w_row[std::int64_t{kx} * p.in_c], acc);
    }
  }
  return acc;
}

// Depthwise backward of one input value, one worker (d_out and relu_out at its image): only the
// taps that read it. Terms in backward_sum's order.
STIMLOOP_HOST_DEVICE inline float depthwise_backward_whole(const LayerParams& p, const float* d_out,
                                                           const float* relu_out, const float* w,
                                                           const NhwcPos& at) {
  float acc = 0.0f;
  for_each_gather_tap(at.y, p.k_h, p.stride_h, p.pad_top, p.out_h, [&](int ky, int oy) {
    for_each_gather_tap(at.x, p.k_w, p.stride_w, p.pad_left, p.out_w, [&](int kx, int ox) {
      const std::int64_t g = (std::int64_t{oy} * p.out_w + ox) * p.in_c + at.c;
      if (relu_passes(relu_out, g)) {
        acc = fmaf(d_out[g], w[(std::int64_t{ky} * p.k_w + kx) * p.in_c + at.c], acc);
      }
    });
  });
  return acc;
}

// Depthwise backward at stride 2, the 2 x 2 block of input values (2 by + dy, 2 bx + dx) of
// channel c (those inside the input): acc[2 dy + dx]. The four share one window of output
// gradients, each fetched once for every input it feeds (a 5 x 5 kernel: 9 for 4 inputs, where
// one input alone takes 4-9), and the four sums are independent chains. The window goes by output
// row and column descending, which is each input's taps ascending, so each value has the
// per-value gather's terms in its order: the same bits. `gradient(oy, ox, d)` sets d to the
// output gradient at (oy, ox) of channel c and says whether it has a term (false: masked).
template <class Gradient>
STIMLOOP_HOST_DEVICE inline void depthwise_backward_block2_of(const LayerParams& p, const float* w,
                                                              int by, int bx, int c,
                                                              Gradient&& gradient,
                                                              float (&acc)[4]) {
  const int iy0 = 2 * by, ix0 = 2 * bx;
  // Outputs o with 0 <= iy + pad - 2 o < k for iy in {iy0, iy0 + 1}.
  const int oy_hi = min_int((iy0 + 1 + p.pad_top) / 2, p.out_h - 1);
  const int ox_hi = min_int((ix0 + 1 + p.pad_left) / 2, p.out_w - 1);
  const int oy_lo = max_int(ceil_half(iy0 + p.pad_top - (p.k_h - 1)), 0);
  const int ox_lo = max_int(ceil_half(ix0 + p.pad_left - (p.k_w - 1)), 0);
  for (int q = 0; q < 4; ++q) acc[q] = 0.0f;
  for (int oy = oy_hi; oy >= oy_lo; --oy) {
    for (int ox = ox_hi; ox >= ox_lo; --ox) {
      float d;
      if (!gradient(oy, ox, d)) continue;
      for (int dy = 0; dy < 2; ++dy) {
        const int ky = iy0 + dy + p.pad_top - 2 * oy;
        if (ky < 0 || ky >= p.k_h || iy0 + dy >= p.in_h) continue;
        for (int dx = 0; dx < 2; ++dx) {
          const int kx = ix0 + dx + p.pad_left - 2 * ox;
          if (kx < 0 || kx >= p.k_w || ix0 + dx >= p.in_w) continue;
          acc[2 * dy + dx] =
              fmaf(d, w[(std::int64_t{ky} * p.k_w + kx) * p.in_c + c], acc[2 * dy + dx]);
        }
      }
    }
  }
}
// The plain layer: d_out of image b, masked by the layer's ReLU output where it has one.
STIMLOOP_HOST_DEVICE inline void depthwise_backward_block2(const LayerParams& p, const float* d_out,
                                                           const float* relu_out, const float* w,
                                                           std::int64_t b, int by, int bx, int c,
                                                           float (&acc)[4]) {
  const std::int64_t image = b * p.out_size();
  depthwise_backward_block2_of(
      p, w, by, bx, c,
      [&](int oy, int ox, float& d) {
        const std::int64_t g = image + (std::int64_t{oy} * p.out_w + ox) * p.in_c + c;
        if (!relu_passes(relu_out, g)) return false;
        d = d_out[g];
        return true;
      },
      acc);
}

// Forward, output value i (of p.out_size() per image): acc plus this lane's terms in * w.
// Term order: conv (ky, kx, ci); depthwise (ky, kx); pointwise ci. The flat term index
// advances by `lanes` with carries, not a division per term.
STIMLOOP_HOST_DEVICE inline float forward_sum(const LayerParams& p, const float* in, const float* w,
                                              std::int64_t i, float acc, int lane = 0,
                                              int lanes = 1) {
  const NhwcPos o = unravel(i, p.out_h, p.out_w, p.out_c);
  const float* image = in + o.b * p.in_size();
  switch (p.kind) {
    case LayerKind::kConv2D: {
      int ci = lane, kx = 0, ky = 0;
      carry_taps(ci, p.in_c, kx, ky, p.k_w);
      while (ky < p.k_h) {
        const int iy = input_of_tap(o.y, ky, p.stride_h, p.pad_top, p.in_h);
        const int ix = input_of_tap(o.x, kx, p.stride_w, p.pad_left, p.in_w);
        if (iy >= 0 && ix >= 0) {
          acc = fmaf(image[(std::int64_t{iy} * p.in_w + ix) * p.in_c + ci],
                     w[((std::int64_t{ky} * p.k_w + kx) * p.in_c + ci) * p.out_c + o.c], acc);
        }
        ci += lanes;
        carry_taps(ci, p.in_c, kx, ky, p.k_w);
      }
      return acc;
    }
    case LayerKind::kDepthwise: {
      if (lanes == 1) return depthwise_forward_whole(p, image, w, o, acc);
      int kx = lane, ky = 0;
      while (kx >= p.k_w) kx -= p.k_w, ++ky;
      while (ky < p.k_h) {
        const int iy = input_of_tap(o.y, ky, p.stride_h, p.pad_top, p.in_h);
        const int ix = input_of_tap(o.x, kx, p.stride_w, p.pad_left, p.in_w);
        if (iy >= 0 && ix >= 0) {
          acc = fmaf(image[(std::int64_t{iy} * p.in_w + ix) * p.in_c + o.c],
                     w[(std::int64_t{ky} * p.k_w + kx) * p.in_c + o.c], acc);
        }
        kx += lanes;
        while (kx >= p.k_w) kx -= p.k_w, ++ky;
      }
      return acc;
    }
    case LayerKind::kPointwise: {
      const float* pixel = image + (std::int64_t{o.y} * p.in_w + o.x) * p.in_c;
      for (int k = lane; k < p.in_c; k += lanes) {
        acc = fmaf(pixel[k], w[std::int64_t{k} * p.out_c + o.c], acc);
      }
      return acc;
    }
  }
  return acc;
}

// The output value from its full sum (bias added before the terms by the plain kernels, after
// them by split sums): ReLU when the op has one.
STIMLOOP_HOST_DEVICE inline float activate(const LayerParams& p, float sum) {
  return p.relu ? fmaxf(sum, 0.0f) : sum;
}
STIMLOOP_HOST_DEVICE inline float bias_of(const LayerParams& p, const float* bias, std::int64_t i) {
  return bias != nullptr ? bias[i % p.out_c] : 0.0f;
}

// Backward to the input, input value i (of p.in_size() per image): this lane's terms
// d_pre * w, where d_pre is d_out masked by the op's ReLU output.
// Term order: conv (ky, kx, co) over the visited taps, split by that flat index (TapLaneCursor);
// depthwise (ky, kx); pointwise co. Only the taps that read this input are visited.
STIMLOOP_HOST_DEVICE inline float backward_sum(const LayerParams& p, const float* d_out,
                                               const float* relu_out, const float* w,
                                               std::int64_t i, int lane = 0, int lanes = 1) {
  const NhwcPos at = unravel(i, p.in_h, p.in_w, p.in_c);
  const std::int64_t image = at.b * p.out_size();
  float acc = 0.0f;
  switch (p.kind) {
    case LayerKind::kConv2D: {
      // Split over lanes by flat (tap, channel) index (TapLaneCursor), channel by channel within
      // each tap, so a tap's position and bounds are worked out once for all its channels.
      TapLaneCursor cursor(lane, lanes, p.out_c);
      for_each_gather_tap(at.y, p.k_h, p.stride_h, p.pad_top, p.out_h, [&](int ky, int oy) {
        for_each_gather_tap(at.x, p.k_w, p.stride_w, p.pad_left, p.out_w, [&](int kx, int ox) {
          const std::int64_t g = image + (std::int64_t{oy} * p.out_w + ox) * p.out_c;
          const float* w_row = w + ((std::int64_t{ky} * p.k_w + kx) * p.in_c + at.c) * p.out_c;
          for (int co = cursor.next_tap(); co < p.out_c; co += lanes) {
            if (relu_passes(relu_out, g + co)) acc = fmaf(d_out[g + co], w_row[co], acc);
          }
        });
      });
      return acc;
    }
    case LayerKind::kDepthwise: {
      if (lanes == 1)
        return depthwise_backward_whole(p, d_out + image, relu_out ? relu_out + image : nullptr, w,
                                        at);
      int kx = lane, ky = 0;
      while (kx >= p.k_w) kx -= p.k_w, ++ky;
      while (ky < p.k_h) {
        const int oy = output_of_tap(at.y, ky, p.stride_h, p.pad_top, p.out_h);
        const int ox = output_of_tap(at.x, kx, p.stride_w, p.pad_left, p.out_w);
        if (oy >= 0 && ox >= 0) {
          const std::int64_t g = image + (std::int64_t{oy} * p.out_w + ox) * p.in_c + at.c;
          if (relu_passes(relu_out, g)) {
            acc = fmaf(d_out[g], w[(std::int64_t{ky} * p.k_w + kx) * p.in_c + at.c], acc);
          }
        }
        kx += lanes;
        while (kx >= p.k_w) kx -= p.k_w, ++ky;
      }
      return acc;
    }
    case LayerKind::kPointwise: {
      const std::int64_t g = image + (std::int64_t{at.y} * p.out_w + at.x) * p.out_c;
      const float* w_row = w + std::int64_t{at.c} * p.out_c;
      for (int k = lane; k < p.out_c; k += lanes) {
        if (relu_passes(relu_out, g + k)) acc = fmaf(d_out[g + k], w_row[k], acc);
      }
      return acc;
    }
  }
  return acc;
}

// Pointwise backward with the weights transposed, w_t (out_c, in_c): consecutive input channels
// read consecutive weights (coalesced across a warp's lanes, where the (in_c, out_c) layout puts
// out_c floats between them). Terms and order as backward_sum's, so the same bits.
STIMLOOP_HOST_DEVICE inline float pointwise_backward_transposed(const LayerParams& p,
                                                                const float* d_out,
                                                                const float* relu_out,
                                                                const float* w_t, std::int64_t i,
                                                                int lane = 0, int lanes = 1) {
  const std::int64_t pixel = i / p.in_c;
  const int ci = static_cast<int>(i - pixel * p.in_c);
  const std::int64_t g = pixel * p.out_c;
  float acc = 0.0f;
  for (int k = lane; k < p.out_c; k += lanes) {
    if (relu_passes(relu_out, g + k))
      acc = fmaf(d_out[g + k], w_t[std::int64_t{k} * p.in_c + ci], acc);
  }
  return acc;
}

// ---- several values per worker: one load of an input serves a block of channels.

// Blocked forward items read their weights from a copy whose (tap, input channel) rows are padded
// with zeros to a multiple of the block (persistent::pad_weight_rows): a block's kB weights then
// always exist and lie 16-byte aligned, two float4 loads on the GPU where eight scalar loads were
// (a warp's lanes hold several blocks, so each scalar load touched two lines).
STIMLOOP_HOST_DEVICE inline int padded_channels(int channels, int block) {
  return (channels + block - 1) / block * block;
}
// acc[j] += v * row[j] for the kB weights of a padded row.
template <int kB>
STIMLOOP_HOST_DEVICE inline void fma_weight_block(float v, const float* row, float (&acc)[kB]) {
#if defined(__CUDA_ARCH__)
  static_assert(kB % 4 == 0, "blocks of whole float4s");
  const float4* w4 = reinterpret_cast<const float4*>(row);
#pragma unroll
  for (int q = 0; q < kB / 4; ++q) {
    const float4 f = w4[q];  // each load next to its four FMAs: hoisted loads cost spills
    acc[4 * q] = fmaf(v, f.x, acc[4 * q]);
    acc[4 * q + 1] = fmaf(v, f.y, acc[4 * q + 1]);
    acc[4 * q + 2] = fmaf(v, f.z, acc[4 * q + 2]);
    acc[4 * q + 3] = fmaf(v, f.w, acc[4 * q + 3]);
  }
#else
  for (int j = 0; j < kB; ++j) acc[j] = fmaf(v, row[j], acc[j]);
#endif
}

// Forward of a dense conv or pointwise op, kB consecutive output channels [co0, co0 + kB) at one
// output pixel (flat over n x out_h x out_w), weights padded as above to a multiple of kB
// (persistent::pad_weight_rows pads to kChannelBlock, the kB of every caller): acc[j] plus the
// terms, in the order of forward_sum with one lane, so each value below out_c has forward_sum's
// bits (the padding's values are sums of zeros, for the caller to drop). One load of an input value
// serves kB FMAs, where forward_sum spends two loads on each.
template <int kB>
STIMLOOP_HOST_DEVICE inline void forward_block(const LayerParams& p, const float* in,
                                               const float* w_padded, std::int64_t pixel, int co0,
                                               float (&acc)[kB]) {
  const int ox = static_cast<int>(pixel % p.out_w);
  const std::int64_t rest = pixel / p.out_w;
  const int oy = static_cast<int>(rest % p.out_h);
  const float* image = in + (rest / p.out_h) * p.in_size();
  const int stride = padded_channels(p.out_c, kB);
  for (int ky = 0; ky < p.k_h; ++ky) {
    const int iy = input_of_tap(oy, ky, p.stride_h, p.pad_top, p.in_h);
    if (iy < 0) continue;
    for (int kx = 0; kx < p.k_w; ++kx) {
      const int ix = input_of_tap(ox, kx, p.stride_w, p.pad_left, p.in_w);
      if (ix < 0) continue;
      const float* pixel_in = image + (std::int64_t{iy} * p.in_w + ix) * p.in_c;
      const float* w_tap = w_padded + (std::int64_t{ky} * p.k_w + kx) * p.in_c * stride + co0;
      STIMLOOP_DEVICE_NO_UNROLL
      for (int ci = 0; ci < p.in_c; ++ci) {
        fma_weight_block(pixel_in[ci], w_tap + std::int64_t{ci} * stride, acc);
      }
    }
  }
}

// ---- a separable layer's two ops in one pass, where the pointwise op's channels are few.

// Forward of a pointwise op `pw` fed by a depthwise op `dw` without ReLU, kB output channels at one
// pixel (blocks and padded weights as forward_block): the depthwise values (at most kC channels)
// are computed here, as forward_sum computes them, instead of being read back, so every value has
// the bits of the two ops run one after the other.
template <int kB, int kC>
STIMLOOP_HOST_DEVICE inline void separable_forward_block(const LayerParams& dw, const float* dw_in,
                                                         const float* dw_w, const float* dw_bias,
                                                         const LayerParams& pw,
                                                         const float* pw_w_padded,
                                                         std::int64_t pixel, int co0,
                                                         float (&acc)[kB]) {
  float v[kC];
  for (int c = 0; c < kC && c < dw.out_c; ++c) {
    const std::int64_t j = pixel * dw.out_c + c;
    v[c] = activate(dw, forward_sum(dw, dw_in, dw_w, j, bias_of(dw, dw_bias, j)));
  }
  const int stride = padded_channels(pw.out_c, kB);
  for (int c = 0; c < kC && c < pw.in_c; ++c) {
    fma_weight_block(v[c], pw_w_padded + std::int64_t{c} * stride + co0, acc);
  }
}

// The gradient at a depthwise output (flat pixel `pixel` of pw's input, channel w_row's) as the
// fused pointwise op's backward computes it: sum over pw's outputs k of d_out * w_row[k], masked.
STIMLOOP_HOST_DEVICE inline float pointwise_gradient_at(const LayerParams& pw,
                                                        const float* pw_d_out,
                                                        const float* pw_relu_out,
                                                        const float* w_row, std::int64_t pixel) {
  const std::int64_t g = pixel * pw.out_c;
  float d = 0.0f;
  for (int k = 0; k < pw.out_c; ++k) {
    if (relu_passes(pw_relu_out, g + k)) d = fmaf(pw_d_out[g + k], w_row[k], d);
  }
  return d;
}

// Input gradient i of a depthwise op `dw` without ReLU whose output feeds a pointwise op `pw`
// with few output channels: the gradient at each tap's output is the pointwise backward value,
// computed here as backward_sum computes it instead of being read back (same bits as the two
// backward passes one after the other).
STIMLOOP_HOST_DEVICE inline float separable_backward(const LayerParams& dw, const float* dw_w,
                                                     const LayerParams& pw, const float* pw_d_out,
                                                     const float* pw_relu_out, const float* pw_w,
                                                     std::int64_t i) {
  const NhwcPos at = unravel(i, dw.in_h, dw.in_w, dw.in_c);
  const std::int64_t image = at.b * dw.out_h * dw.out_w;  // pixels before image at.b
  const float* w_row = pw_w + std::int64_t{at.c} * pw.out_c;
  float acc = 0.0f;
  for_each_gather_tap(at.y, dw.k_h, dw.stride_h, dw.pad_top, dw.out_h, [&](int ky, int oy) {
    for_each_gather_tap(at.x, dw.k_w, dw.stride_w, dw.pad_left, dw.out_w, [&](int kx, int ox) {
      const float d = pointwise_gradient_at(pw, pw_d_out, pw_relu_out, w_row,
                                            image + std::int64_t{oy} * dw.out_w + ox);
      acc = fmaf(d, dw_w[(std::int64_t{ky} * dw.k_w + kx) * dw.in_c + at.c], acc);
    });
  });
  return acc;
}

// separable_backward for a stride-2 depthwise op, by 2 x 2 input blocks of channel c in image b
// (depthwise_backward_block2_of): each pointwise gradient computed once for the inputs it feeds.
STIMLOOP_HOST_DEVICE inline void separable_backward_block2(const LayerParams& dw, const float* dw_w,
                                                           const LayerParams& pw,
                                                           const float* pw_d_out,
                                                           const float* pw_relu_out,
                                                           const float* pw_w, std::int64_t b,
                                                           int by, int bx, int c, float (&acc)[4]) {
  const std::int64_t image = b * dw.out_h * dw.out_w;  // pixels before image b
  const float* w_row = pw_w + std::int64_t{c} * pw.out_c;
  depthwise_backward_block2_of(
      dw, dw_w, by, bx, c,
      [&](int oy, int ox, float& d) {
        d = pointwise_gradient_at(pw, pw_d_out, pw_relu_out, w_row,
                                  image + std::int64_t{oy} * dw.out_w + ox);
        return true;  // the depthwise op has no ReLU (plan_fusions): every tap is a term
      },
      acc);
}

// Backward of a dense conv with at most kC input channels, all channels of one input pixel (flat
// over n x in_h x in_w): this lane's terms, in the order of backward_sum, so each channel's
// partial sum has backward_sum's bits. One load of an output gradient (and its ReLU mask) serves
// every input channel.
template <int kC>
STIMLOOP_HOST_DEVICE inline void backward_pixel(const LayerParams& p, const float* d_out,
                                                const float* relu_out, const float* w,
                                                std::int64_t pixel, int lane, int lanes,
                                                float (&acc)[kC]) {
  const int ix = static_cast<int>(pixel % p.in_w);
  const std::int64_t rest = pixel / p.in_w;
  const int iy = static_cast<int>(rest % p.in_h);
  const std::int64_t image = (rest / p.in_h) * p.out_size();
  TapLaneCursor cursor(lane, lanes, p.out_c);
  for_each_gather_tap(iy, p.k_h, p.stride_h, p.pad_top, p.out_h, [&](int ky, int oy) {
    for_each_gather_tap(ix, p.k_w, p.stride_w, p.pad_left, p.out_w, [&](int kx, int ox) {
      const std::int64_t g = image + (std::int64_t{oy} * p.out_w + ox) * p.out_c;
      const float* w_tap = w + (std::int64_t{ky} * p.k_w + kx) * p.in_c * p.out_c;
      for (int co = cursor.next_tap(); co < p.out_c; co += lanes) {
        if (!relu_passes(relu_out, g + co)) continue;
        const float d = d_out[g + co];
        for (int c = 0; c < kC; ++c) {
          if (c < p.in_c) acc[c] = fmaf(d, w_tap[std::int64_t{c} * p.out_c + co], acc[c]);
        }
      }
    });
  });
}

}  // namespace stimloop::element_ops
