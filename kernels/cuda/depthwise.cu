// Depthwise k x k convolution: the spatial half of every separable layer (5x5, strides 1 and 2)
// and the shared models' 28x28 'valid' spatial readout (one output pixel per channel).
//   - Tiled forward (k <= 5, stride <= 2: every separable layer): a block owns an 8 x 8 output
//     tile x 32 channels; the input patch it reads sits in shared memory, loaded eight elements
//     per thread at a time; lanes are channels, warps are tile rows, each thread keeps its
//     channel's taps in registers and computes 8 pixels. Square 3x3 / 5x5 at strides 1 and 2
//     have bodies with those sizes fixed at compile time.
//   - Backward, stride 2 (square 3x3 / 5x5): one thread per 2 x 2 block of inputs of a channel
//     (quad kernel below).
//   - Backward, any other shape: one thread per input value, gathering (no atomics,
//     deterministic), with tap loops that visit only the taps of the input's parity class for
//     square 3x3 / 5x5 at strides 1 and 2. (A shared-memory tiled backward with run-time strides
//     measured slower on an H200: its per-tap stride tests cost more than the staging saved.)
//   - Straightforward kernels (any shape, the readout): one thread per output value (forward) or
//     input value (backward), channel fastest; the reference STIMLOOP_CUDA_KERNELS=plain selects.
// Grouped: one launch serves many models (grouped.h).
#include "kernels/cuda/kernel_variant.h"

namespace stimloop::cuda {
namespace {

constexpr int kThreads = 256;

// The straightforward kernels' arithmetic is kernels/element_ops.h (checked against the CPU
// reference in tests/unit/test_element_ops.cpp).
__global__ void __launch_bounds__(kThreads) depthwise_forward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= std::int64_t{t.n} * p.out_size()) return;
  const float sum = element_ops::forward_sum(p, t.in, t.w, i, element_ops::bias_of(p, t.bias, i));
  t.out[i] = element_ops::activate(p, sum);
}

// Backward (gather) at one input value, any shape: the taps that read it, in (ky, kx) order.
__device__ float gather_any(const OpTask& t, std::int64_t i) {
  return element_ops::backward_sum(t.p, t.in, t.aux, t.w, i);
}

__global__ void __launch_bounds__(kThreads) depthwise_backward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const std::int64_t i = block * kThreads + threadIdx.x;
  if (i >= std::int64_t{t.n} * t.p.in_size()) return;
  t.out[i] = gather_any(t, i);
}

// ---- tiled kernels
constexpr int kTile = 8;    // pixels per tile side (forward: output, backward: input)
constexpr int kLanes = 32;  // channels per block
constexpr int kTiledThreads = kLanes * kTile;  // one warp per tile row
constexpr int kMaxK = 5, kMaxStride = 2;
constexpr int kInPatch = (kTile - 1) * kMaxStride + kMaxK;  // input patch side: 19
constexpr int kBatch = 8;  // loads in flight per thread while staging

__host__ __device__ inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

std::int64_t tiled_forward_blocks(const OpTask& t) {
  return std::int64_t{t.n} * ceil_div(t.p.out_h, kTile) * ceil_div(t.p.out_w, kTile) *
         ceil_div(t.p.in_c, kLanes);
}

// (image, tile y, tile x, channel chunk) of a block, over a grid of tiles of size h x w.
struct TilePos {
  std::int64_t image;
  int y0, x0, c0;
};
__device__ inline TilePos tile_pos(std::int64_t block, int h, int w, int c) {
  const int chunks = ceil_div(c, kLanes), tiles_x = ceil_div(w, kTile),
            tiles_y = ceil_div(h, kTile);
  const int chunk = static_cast<int>(block % chunks);
  block /= chunks;
  const int tx = static_cast<int>(block % tiles_x);
  block /= tiles_x;
  const int ty = static_cast<int>(block % tiles_y);
  return {block / tiles_y, ty * kTile, tx * kTile, chunk * kLanes};
}

// Channel ch's taps, in registers (zero beyond the kernel or the channels).
__device__ inline void load_taps(const OpTask& t, int ch, float taps[kMaxK * kMaxK]) {
  const LayerParams& p = t.p;
#pragma unroll
  for (int ky = 0; ky < kMaxK; ++ky) {
#pragma unroll
    for (int kx = 0; kx < kMaxK; ++kx) {
      const bool inside = ky < p.k_h && kx < p.k_w && ch < p.in_c;
      taps[ky * kMaxK + kx] = inside ? t.w[(std::int64_t{ky} * p.k_w + kx) * p.in_c + ch] : 0.0f;
    }
  }
}

// One block's tile. K and S are the kernel side and stride when known at compile time (0: read
// them from the task). With both fixed, the staging loop's index arithmetic is by constants and
// fully unrolled: with run-time values, its divisions, not the taps, were the kernel's time.
template <int K, int S>
__device__ void forward_tile(const OpTask& t, std::int64_t block,
                             float (&in_s)[kInPatch][kInPatch][kLanes]) {
  const LayerParams& p = t.p;
  const int k_h = K > 0 ? K : p.k_h, k_w = K > 0 ? K : p.k_w;
  const int s_h = S > 0 ? S : p.stride_h, s_w = S > 0 ? S : p.stride_w;
  const int c = p.in_c;
  const TilePos pos = tile_pos(block, p.out_h, p.out_w, c);
  const int iy_base = pos.y0 * s_h - p.pad_top, ix_base = pos.x0 * s_w - p.pad_left;
  const int ph = (kTile - 1) * s_h + k_h, pw = (kTile - 1) * s_w + k_w;
  const float* image = t.in + pos.image * p.in_size();
  const int staged = ph * pw * kLanes;
  for (int base = threadIdx.x; base < staged; base += kBatch * kTiledThreads) {
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + u * kTiledThreads;
      const int ch = i % kLanes, col = (i / kLanes) % pw, row = i / (kLanes * pw);
      const int iy = iy_base + row, ix = ix_base + col;
      const bool inside =
          i < staged && iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w && pos.c0 + ch < c;
      v[u] = inside ? image[(std::int64_t{iy} * p.in_w + ix) * c + pos.c0 + ch] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + u * kTiledThreads;
      if (i < staged) in_s[i / (kLanes * pw)][(i / kLanes) % pw][i % kLanes] = v[u];
    }
  }
  const int lane = threadIdx.x % kLanes, row = threadIdx.x / kLanes;
  const int ch = pos.c0 + lane;
  float taps[kMaxK * kMaxK];
  load_taps(t, ch, taps);
  __syncthreads();
  const int oy = pos.y0 + row;
  if (oy >= p.out_h || ch >= c) return;
  const float bias = t.bias != nullptr ? t.bias[ch] : 0.0f;
  float* out = t.out + ((pos.image * p.out_h + oy) * p.out_w) * c + ch;
#pragma unroll
  for (int j = 0; j < kTile; ++j) {
    const int ox = pos.x0 + j;
    if (ox >= p.out_w) break;
    float acc = bias;
#pragma unroll
    for (int ky = 0; ky < kMaxK; ++ky) {
      if (ky >= k_h) break;
#pragma unroll
      for (int kx = 0; kx < kMaxK; ++kx) {
        if (kx >= k_w) break;
        acc = fmaf(in_s[row * s_h + ky][j * s_w + kx][lane], taps[ky * kMaxK + kx], acc);
      }
    }
    out[std::int64_t{ox} * c] = p.relu ? fmaxf(acc, 0.0f) : acc;
  }
}

// Square K x K at stride S (both axes), the shapes with a specialised body.
__host__ __device__ inline bool is_square(const LayerParams& p, int k, int s) {
  return p.k_h == k && p.k_w == k && p.stride_h == s && p.stride_w == s;
}

// Every task of a group may have its own shape; a block's branch is uniform (one task a block).
__global__ void __launch_bounds__(kTiledThreads) depthwise_forward_tiled_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  __shared__ float in_s[kInPatch][kInPatch][kLanes];
  const std::int64_t block = load_task(tasks, t);
  if (is_square(t.p, 5, 2)) {
    forward_tile<5, 2>(t, block, in_s);
  } else if (is_square(t.p, 5, 1)) {
    forward_tile<5, 1>(t, block, in_s);
  } else if (is_square(t.p, 3, 2)) {
    forward_tile<3, 2>(t, block, in_s);
  } else if (is_square(t.p, 3, 1)) {
    forward_tile<3, 1>(t, block, in_s);
  } else {
    forward_tile<0, 0>(t, block, in_s);
  }
}

// Backward (gather), one thread per input value, K x K at stride S: of the K taps along an axis
// only those of the input's parity class modulo S reached an output, so the loops visit just
// those (ceil(K / S) each) with no per-tap stride test.
template <int K, int S>
__device__ float gather_taps(const OpTask& t, const NhwcIndex& at) {
  const LayerParams& p = t.p;
  const int c = p.in_c;
  const int ry = at.y + p.pad_top, rx = at.x + p.pad_left;  // = o * S + k
  const float* d_out = t.in + at.b * p.out_size() + at.c;
  const float* aux = t.aux != nullptr ? t.aux + at.b * p.out_size() + at.c : nullptr;
  float acc = 0.0f;
#pragma unroll
  for (int a = 0; a < (K + S - 1) / S; ++a) {
    const int ky = ry % S + a * S, oy = (ry - ky) / S;
    if (ky >= K || ry < ky || oy >= p.out_h) continue;
#pragma unroll
    for (int b = 0; b < (K + S - 1) / S; ++b) {
      const int kx = rx % S + b * S, ox = (rx - kx) / S;
      if (kx >= K || rx < kx || ox >= p.out_w) continue;
      const int g = (oy * p.out_w + ox) * c;
      if (aux != nullptr && aux[g] <= 0.0f) continue;
      acc = fmaf(d_out[g], t.w[(ky * K + kx) * c + at.c], acc);
    }
  }
  return acc;
}

__global__ void __launch_bounds__(kThreads) depthwise_backward_gather_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kThreads + threadIdx.x;
  const std::int64_t total = std::int64_t{t.n} * p.in_size();
  if (i >= total) return;
  const NhwcIndex at = unravel_nhwc(i, p.in_h, p.in_w, p.in_c);
  float acc;
  if (is_square(p, 5, 2)) {
    acc = gather_taps<5, 2>(t, at);
  } else if (is_square(p, 5, 1)) {
    acc = gather_taps<5, 1>(t, at);
  } else if (is_square(p, 3, 2)) {
    acc = gather_taps<3, 2>(t, at);
  } else if (is_square(p, 3, 1)) {
    acc = gather_taps<3, 1>(t, at);
  } else {
    acc = gather_any(t, i);
  }
  t.out[i] = acc;
}

// ---- stride-2 backward, a 2 x 2 input block per thread
// The four inputs (2qy + py, 2qx + px) of one channel gather from the same (K+1)/2 x (K+1)/2
// window of output gradients, and every tap serves exactly one of them: one thread loads the
// window once and each tap's weight once, where four gathering threads loaded each several times
// and repeated the index arithmetic. DY / DX: the tap row (column) that window row 0 meets at
// py = 0, K-1 or K-2 by the parity of the padding, fixed at compile time so the weights stay in
// registers.
constexpr int kQuadThreads = 256;

__host__ __device__ inline std::int64_t quads(const OpTask& t) {
  return std::int64_t{t.n} * ((t.p.in_h + 1) / 2) * ((t.p.in_w + 1) / 2) * t.p.in_c;
}
std::int64_t quad_blocks(const OpTask& t) { return (quads(t) + kQuadThreads - 1) / kQuadThreads; }

// Which shapes the quad kernel takes: square 3x3 or 5x5 at stride 2.
__host__ __device__ inline bool quad_shape(const LayerParams& p) {
  return is_square(p, 5, 2) || is_square(p, 3, 2);
}

template <int K, int DY, int DX>
__device__ void quad_backward(const OpTask& t, const NhwcIndex& q) {
  constexpr int R = (K + 1) / 2;  // window side
  const LayerParams& p = t.p;
  const int c = p.in_c;
  const int iy0 = 2 * q.y, ix0 = 2 * q.x;
  // First output row (column) of the window: ceil((iy0 + pad - (K - 1)) / 2), by an arithmetic
  // shift, which floors for negative values too.
  const int oy0 = (iy0 + p.pad_top - (K - 1) + 1) >> 1;
  const int ox0 = (ix0 + p.pad_left - (K - 1) + 1) >> 1;
  const float* d_out = t.in + q.b * p.out_size() + q.c;
  const float* aux = t.aux != nullptr ? t.aux + q.b * p.out_size() + q.c : nullptr;
  float win[R][R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int s = 0; s < R; ++s) {
      const int oy = oy0 + r, ox = ox0 + s;
      float g = 0.0f;
      if (oy >= 0 && oy < p.out_h && ox >= 0 && ox < p.out_w) {
        const int at = (oy * p.out_w + ox) * c;
        g = aux != nullptr && aux[at] <= 0.0f ? 0.0f : d_out[at];
      }
      win[r][s] = g;
    }
  }
  float w[K * K];
#pragma unroll
  for (int k = 0; k < K * K; ++k) w[k] = t.w[k * c + q.c];
  float* d_in = t.out + q.b * p.in_size() + q.c;
#pragma unroll
  for (int py = 0; py < 2; ++py) {
    if (iy0 + py >= p.in_h) break;
#pragma unroll
    for (int px = 0; px < 2; ++px) {
      if (ix0 + px >= p.in_w) break;
      float acc = 0.0f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int ky = DY + py - 2 * r;
        if (ky < 0 || ky >= K) continue;
#pragma unroll
        for (int s = 0; s < R; ++s) {
          const int kx = DX + px - 2 * s;
          if (kx < 0 || kx >= K) continue;
          acc = fmaf(win[r][s], w[ky * K + kx], acc);
        }
      }
      d_in[((iy0 + py) * p.in_w + ix0 + px) * c] = acc;
    }
  }
}

template <int K>
__device__ void quad_backward_k(const OpTask& t, const NhwcIndex& q) {
  // Window row 0 meets tap row K-1 at py = 0 when iy0 + pad - (K-1) is even, else K-2.
  const bool dy_full = ((t.p.pad_top - (K - 1)) & 1) == 0;
  const bool dx_full = ((t.p.pad_left - (K - 1)) & 1) == 0;
  if (dy_full && dx_full) {
    quad_backward<K, K - 1, K - 1>(t, q);
  } else if (dy_full) {
    quad_backward<K, K - 1, K - 2>(t, q);
  } else if (dx_full) {
    quad_backward<K, K - 2, K - 1>(t, q);
  } else {
    quad_backward<K, K - 2, K - 2>(t, q);
  }
}

__global__ void __launch_bounds__(kQuadThreads) depthwise_backward_quad_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kQuadThreads + threadIdx.x;
  const std::int64_t total = quads(t);
  if (i >= total) return;
  const NhwcIndex q = unravel_nhwc(i, (p.in_h + 1) / 2, (p.in_w + 1) / 2, p.in_c);
  if (p.k_h == 5) {
    quad_backward_k<5>(t, q);
  } else {
    quad_backward_k<3>(t, q);
  }
}

}  // namespace

const KernelVariant kDepthwiseForwardTiled = {
    "depthwise_forward_tiled_kernel", kTiledThreads, tiled_forward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(depthwise_forward_tiled_kernel, kTiledThreads)};
const KernelVariant kDepthwiseForward = {
    "depthwise_forward_kernel", kThreads, blocks_per_output<kThreads>,
    STIMLOOP_VARIANT_LAUNCHER(depthwise_forward_kernel, kThreads)};
const KernelVariant kDepthwiseBackwardGather = {
    "depthwise_backward_gather_kernel", kThreads, blocks_per_input<kThreads>,
    STIMLOOP_VARIANT_LAUNCHER(depthwise_backward_gather_kernel, kThreads)};
const KernelVariant kDepthwiseBackwardQuad = {
    "depthwise_backward_quad_kernel", kQuadThreads, quad_blocks,
    STIMLOOP_VARIANT_LAUNCHER(depthwise_backward_quad_kernel, kQuadThreads)};
bool depthwise_backward_quad_shape(const LayerParams& p) { return quad_shape(p); }
const KernelVariant kDepthwiseBackward = {
    "depthwise_backward_kernel", kThreads, blocks_per_input<kThreads>,
    STIMLOOP_VARIANT_LAUNCHER(depthwise_backward_kernel, kThreads)};

}  // namespace stimloop::cuda
