// Dense k x k convolution: layer 0 of every model (5x5, 3 -> F channels at 112x112), three
// quarters of the arithmetic.
//
// Straightforward kernels (any shape): one thread per output value (forward) or per input value
// (backward, gathering over the taps that touched it: no atomics, deterministic).
//
// Tiled kernels (stride 1, three input channels, K = 3 or 5). Forward, 16 x 32 pixel tiles: the
// input tile (+ halo) and the weights of a 16-channel chunk sit in shared memory; each thread
// owns 4 pixels down one column x 8 channels (32 accumulators). Lanes are consecutive columns, so
// the column windows a thread slides over its 4 rows read conflict-free shared memory, and the 8
// weights of a warp are one broadcast; the results leave through shared memory as whole channel
// runs. Backward to the input, 8 x 32 tiles: the ReLU-masked output gradient tile (+ halo) of a
// 16-channel chunk in shared memory; four groups of warps each take four of its channels, each
// thread 4 pixels down its column x 3 input channels, sliding the same way, and the groups' sums
// are added in a fixed order at the end.
#include "kernels/cuda/kernel_variant.h"

namespace stimloop::cuda {
namespace {

constexpr int kPlainThreads = 256;

// The straightforward kernels' arithmetic is kernels/element_ops.h (checked against the CPU
// reference in tests/unit/test_element_ops.cpp).
__global__ void __launch_bounds__(kPlainThreads) conv2d_forward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const std::int64_t i = block * kPlainThreads + threadIdx.x;
  if (i >= std::int64_t{t.n} * p.out_size()) return;
  const float sum = element_ops::forward_sum(p, t.in, t.w, i, element_ops::bias_of(p, t.bias, i));
  t.out[i] = element_ops::activate(p, sum);
}

__global__ void __launch_bounds__(kPlainThreads) conv2d_backward_kernel(TaskList tasks) {
  STIMLOOP_SHARED_TASK(t);
  const std::int64_t block = load_task(tasks, t);
  const std::int64_t i = block * kPlainThreads + threadIdx.x;
  if (i >= std::int64_t{t.n} * t.p.in_size()) return;
  t.out[i] = element_ops::backward_sum(t.p, t.in, t.aux, t.w, i);
}

// ---- tiled kernels
constexpr int kTileW = 32;                           // columns per tile = lanes of a warp
constexpr int kRowsPerThread = 4;                    // pixels per thread, down one column
constexpr int kRowGroups = 4;                        // warps along y
constexpr int kTileH = kRowsPerThread * kRowGroups;  // 16 rows
constexpr int kInC = 3;
constexpr int kChanPerThread = 8;                        // forward: output channels per thread
constexpr int kChanGroups = 2;                           // forward: warps along channels
constexpr int kFwdChunk = kChanPerThread * kChanGroups;  // 16 output channels per block
constexpr int kFwdThreads = kTileW * kRowGroups * kChanGroups;  // 256
// Backward: a smaller tile (8 x 32) and four warp groups of channels, added at the end, so a
// single image still fills the card (56 blocks, not 28, each a quarter of the channel loop: one
// image took 145 us with one group and 16-row tiles on an H200, 43 us with four). The weights of
// a tap sit as one float4 (three input channels and a zero), one shared load where three were:
// shared-memory loads, not FMAs, bounded the kernel. (8 rows a thread in eight groups needed
// 128 registers, two blocks an SM, and was slower: 2.6 against 2.1 ms for 219 models.)
constexpr int kBwdRows = 4;                                       // pixels per thread
constexpr int kBwdRowGroups = 2;                                  // warps along y
constexpr int kBwdTileH = kBwdRows * kBwdRowGroups;               // 8 x 32 tiles
constexpr int kBwdGroups = 4;                                     // channel groups of warps
constexpr int kBwdChanPerGroup = 4;                               // channels of a group per pass
constexpr int kBwdThreads = kTileW * kBwdRowGroups * kBwdGroups;  // 256

__host__ __device__ inline int tiles(int size, int tile) { return (size + tile - 1) / tile; }

std::int64_t tiled_forward_blocks(const OpTask& t) {
  return std::int64_t{t.n} * tiles(t.p.out_h, kTileH) * tiles(t.p.out_w, kTileW) *
         tiles(t.p.out_c, kFwdChunk);
}
std::int64_t tiled_backward_blocks(const OpTask& t) {
  return std::int64_t{t.n} * tiles(t.p.in_h, kBwdTileH) * tiles(t.p.in_w, kTileW);
}

template <int K>
__global__ void __launch_bounds__(kFwdThreads) conv2d_forward_tiled_kernel(TaskList tasks) {
  constexpr int kHaloH = kTileH + K - 1, kHaloW = kTileW + K - 1;
  constexpr int kInFloats = kInC * kHaloH * kHaloW, kWFloats = K * K * kInC * kFwdChunk;
  // The output tile goes out through shared memory (padded rows: conflict-free), so that its
  // global stores are whole 64-byte channel runs: stored straight from the registers, a warp's
  // store touched 32 pixels' lines at once and the L1 traffic was the kernel's limit.
  constexpr int kOutStride = kFwdChunk + 1, kOutFloats = kTileH * kTileW * kOutStride;
  constexpr int kSmemFloats = kInFloats + kWFloats > kOutFloats ? kInFloats + kWFloats : kOutFloats;
  static_assert(kInFloats % 4 == 0, "w_s must stay 16-byte aligned");
  STIMLOOP_SHARED_TASK(t);
  __shared__ __align__(16) float smem[kSmemFloats];
  auto& in_s = *reinterpret_cast<float(*)[kInC][kHaloH][kHaloW]>(smem);
  auto& w_s = *reinterpret_cast<float(*)[K * K * kInC][kFwdChunk]>(smem + kInFloats);
  std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const int chunks = tiles(p.out_c, kFwdChunk), tiles_x = tiles(p.out_w, kTileW),
            tiles_y = tiles(p.out_h, kTileH);
  const int chunk = static_cast<int>(block % chunks);
  block /= chunks;
  const int tile_x = static_cast<int>(block % tiles_x);
  block /= tiles_x;
  const int tile_y = static_cast<int>(block % tiles_y);
  const std::int64_t image = block / tiles_y;
  const int oy0 = tile_y * kTileH, ox0 = tile_x * kTileW, co0 = chunk * kFwdChunk;

  // Staged with all of a thread's loads in flight at once (compile-time trip counts, unrolled):
  // waiting for each in turn made the staging, not the arithmetic, the kernel's time.
  const float* in = t.in + image * p.in_size();
  constexpr int kInElems = kInC * kHaloH * kHaloW, kWElems = K * K * kInC * kFwdChunk;
  float staged_in[(kInElems + kFwdThreads - 1) / kFwdThreads];
  float staged_w[(kWElems + kFwdThreads - 1) / kFwdThreads];
#pragma unroll
  for (int u = 0; u < (kInElems + kFwdThreads - 1) / kFwdThreads; ++u) {
    const int i = threadIdx.x + u * kFwdThreads;
    const int c = i % kInC, col = (i / kInC) % kHaloW, row = i / (kInC * kHaloW);
    const int iy = oy0 - p.pad_top + row, ix = ox0 - p.pad_left + col;
    const bool inside = i < kInElems && iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
    staged_in[u] = inside ? in[(std::int64_t{iy} * p.in_w + ix) * kInC + c] : 0.0f;
  }
#pragma unroll
  for (int u = 0; u < (kWElems + kFwdThreads - 1) / kFwdThreads; ++u) {
    const int i = threadIdx.x + u * kFwdThreads;
    const int j = i % kFwdChunk, tap = i / kFwdChunk;
    staged_w[u] =
        i < kWElems && co0 + j < p.out_c ? t.w[std::int64_t{tap} * p.out_c + co0 + j] : 0.0f;
  }
#pragma unroll
  for (int u = 0; u < (kInElems + kFwdThreads - 1) / kFwdThreads; ++u) {
    const int i = threadIdx.x + u * kFwdThreads;
    if (i < kInElems) in_s[i % kInC][i / (kInC * kHaloW)][(i / kInC) % kHaloW] = staged_in[u];
  }
#pragma unroll
  for (int u = 0; u < (kWElems + kFwdThreads - 1) / kFwdThreads; ++u) {
    const int i = threadIdx.x + u * kFwdThreads;
    if (i < kWElems) w_s[i / kFwdChunk][i % kFwdChunk] = staged_w[u];
  }
  __syncthreads();

  const int lane = threadIdx.x % kTileW, warp = threadIdx.x / kTileW;
  const int row_group = warp % kRowGroups, chan_group = warp / kRowGroups;
  float acc[kRowsPerThread][kChanPerThread] = {};
  for (int kx = 0; kx < K; ++kx) {
#pragma unroll
    for (int ci = 0; ci < kInC; ++ci) {
      float v[kRowsPerThread + K - 1];
#pragma unroll
      for (int r = 0; r < kRowsPerThread + K - 1; ++r) {
        v[r] = in_s[ci][row_group * kRowsPerThread + r][lane + kx];
      }
#pragma unroll
      for (int ky = 0; ky < K; ++ky) {
        const float4* w4 =
            reinterpret_cast<const float4*>(&w_s[(ky * K + kx) * kInC + ci][chan_group * 8]);
        const float4 wa = w4[0], wb = w4[1];
        const float wv[8] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) {
#pragma unroll
          for (int c = 0; c < kChanPerThread; ++c) acc[r][c] = fmaf(v[r + ky], wv[c], acc[r][c]);
        }
      }
    }
  }
  __syncthreads();  // everyone is done with in_s and w_s: smem becomes the output tile
#pragma unroll
  for (int c = 0; c < kChanPerThread; ++c) {
    const int j = chan_group * kChanPerThread + c, co = co0 + j;
    const float bias = t.bias != nullptr && co < p.out_c ? t.bias[co] : 0.0f;
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const float y = acc[r][c] + bias;
      smem[((row_group * kRowsPerThread + r) * kTileW + lane) * kOutStride + j] =
          p.relu ? fmaxf(y, 0.0f) : y;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kTileH * kTileW * kFwdChunk; e += kFwdThreads) {
    const int j = e % kFwdChunk, pixel = e / kFwdChunk;
    const int oy = oy0 + pixel / kTileW, ox = ox0 + pixel % kTileW, co = co0 + j;
    if (oy < p.out_h && ox < p.out_w && co < p.out_c) {
      t.out[((image * p.out_h + oy) * p.out_w + ox) * p.out_c + co] = smem[pixel * kOutStride + j];
    }
  }
}

template <int K>
__global__ void __launch_bounds__(kBwdThreads) conv2d_backward_tiled_kernel(TaskList tasks) {
  constexpr int kHaloH = kBwdTileH + K - 1, kHaloW = kTileW + K - 1;
  constexpr int kChunk = kBwdChanPerGroup * kBwdGroups;  // output channels staged per pass
  STIMLOOP_SHARED_TASK(t);
  __shared__ float g_s[kChunk][kHaloH][kHaloW];
  __shared__ __align__(16) float w_s[K * K][kChunk][4];  // [tap][channel][input channel, 0]
  std::int64_t block = load_task(tasks, t);
  const LayerParams& p = t.p;
  const int tiles_x = tiles(p.in_w, kTileW), tiles_y = tiles(p.in_h, kBwdTileH);
  const int tile_x = static_cast<int>(block % tiles_x);
  block /= tiles_x;
  const int tile_y = static_cast<int>(block % tiles_y);
  const std::int64_t image = block / tiles_y;
  const int iy0 = tile_y * kBwdTileH, ix0 = tile_x * kTileW;
  // Output row of halo row 0: d_in[iy] gathers d_out[iy + pad - ky], ky in [0, K).
  const int oy_base = iy0 + p.pad_top - (K - 1), ox_base = ix0 + p.pad_left - (K - 1);
  const std::int64_t g_offset = image * p.out_size();

  const int lane = threadIdx.x % kTileW, warp = threadIdx.x / kTileW;
  const int row_group = warp % kBwdRowGroups, group = warp / kBwdRowGroups;
  float acc[kBwdRows][kInC] = {};
  // Each thread stages its share of a chunk eight loads at a time, all eight in flight at once:
  // a loop that waited for each load in turn left the kernel latency-bound.
  constexpr int kStaged = kChunk * kHaloH * kHaloW;
  constexpr int kBatch = 8;
  for (int co0 = 0; co0 < p.out_c; co0 += kChunk) {
    __syncthreads();  // the previous chunk's reads are done
#pragma unroll 1
    for (int base = 0; base < kStaged; base += kBatch * kBwdThreads) {
      float staged[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = base + threadIdx.x + u * kBwdThreads;
        const int j = i % kChunk, col = (i / kChunk) % kHaloW;
        const int row = i / (kChunk * kHaloW);
        const int oy = oy_base + row, ox = ox_base + col, co = co0 + j;
        float g = 0.0f;
        if (i < kStaged && oy >= 0 && oy < p.out_h && ox >= 0 && ox < p.out_w && co < p.out_c) {
          const std::int64_t at = g_offset + (std::int64_t{oy} * p.out_w + ox) * p.out_c + co;
          g = t.aux != nullptr && t.aux[at] <= 0.0f ? 0.0f : t.in[at];
        }
        staged[u] = g;
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = base + threadIdx.x + u * kBwdThreads;
        if (i < kStaged) g_s[i % kChunk][i / (kChunk * kHaloW)][(i / kChunk) % kHaloW] = staged[u];
      }
    }
    for (int i = threadIdx.x; i < K * K * kChunk * 4; i += kBwdThreads) {
      const int ci = i % 4, j = (i / 4) % kChunk, tap = i / (4 * kChunk);
      w_s[tap][j][ci] = ci < kInC && co0 + j < p.out_c
                            ? t.w[(std::int64_t{tap} * kInC + ci) * p.out_c + co0 + j]
                            : 0.0f;
    }
    __syncthreads();
    // This warp's channel group: channels group, group + kBwdGroups, ... of the chunk.
#pragma unroll 1
    for (int jj = 0; jj < kBwdChanPerGroup; ++jj) {
      const int j = group + jj * kBwdGroups;
#pragma unroll
      for (int kx = 0; kx < K; ++kx) {
        float v[kBwdRows + K - 1];
#pragma unroll
        for (int r = 0; r < kBwdRows + K - 1; ++r) {
          v[r] = g_s[j][row_group * kBwdRows + r][lane + K - 1 - kx];
        }
#pragma unroll
        for (int ky = 0; ky < K; ++ky) {
          const float4 w4 = *reinterpret_cast<const float4*>(&w_s[ky * K + kx][j][0]);
          const float wv[kInC] = {w4.x, w4.y, w4.z};
#pragma unroll
          for (int ci = 0; ci < kInC; ++ci) {
#pragma unroll
            for (int r = 0; r < kBwdRows; ++r) {
              acc[r][ci] = fmaf(v[r + K - 1 - ky], wv[ci], acc[r][ci]);
            }
          }
        }
      }
    }
  }
  // The channel groups' partial sums, added in group order (deterministic) by group 0.
  static_assert(
      sizeof(g_s) >= sizeof(float) * (kBwdGroups - 1) * kBwdRowGroups * kTileW * kBwdRows * kInC,
      "the reduction reuses g_s");
  float* partial = &g_s[0][0][0];
  const int slot = row_group * kTileW + lane;
  constexpr int kSlots = kBwdRowGroups * kTileW, kValues = kBwdRows * kInC;
  __syncthreads();  // every group is done reading g_s
  if (group > 0) {
#pragma unroll
    for (int r = 0; r < kBwdRows; ++r) {
#pragma unroll
      for (int ci = 0; ci < kInC; ++ci) {
        partial[((group - 1) * kValues + r * kInC + ci) * kSlots + slot] = acc[r][ci];
      }
    }
  }
  __syncthreads();
  if (group > 0) return;
#pragma unroll
  for (int gi = 1; gi < kBwdGroups; ++gi) {
#pragma unroll
    for (int r = 0; r < kBwdRows; ++r) {
#pragma unroll
      for (int ci = 0; ci < kInC; ++ci) {
        acc[r][ci] += partial[((gi - 1) * kValues + r * kInC + ci) * kSlots + slot];
      }
    }
  }
  const int ix = ix0 + lane;
  if (ix >= p.in_w) return;
#pragma unroll
  for (int r = 0; r < kBwdRows; ++r) {
    const int iy = iy0 + row_group * kBwdRows + r;
    if (iy >= p.in_h) break;
    float* d_in = t.out + ((image * p.in_h + iy) * p.in_w + ix) * kInC;
#pragma unroll
    for (int ci = 0; ci < kInC; ++ci) d_in[ci] = acc[r][ci];
  }
}

}  // namespace

const KernelVariant kConv2dForward = {
    "conv2d_forward_kernel", kPlainThreads, blocks_per_output<kPlainThreads>,
    STIMLOOP_VARIANT_LAUNCHER(conv2d_forward_kernel, kPlainThreads)};
const KernelVariant kConv2dBackward = {
    "conv2d_backward_kernel", kPlainThreads, blocks_per_input<kPlainThreads>,
    STIMLOOP_VARIANT_LAUNCHER(conv2d_backward_kernel, kPlainThreads)};
const KernelVariant kConv2dForwardTiled3 = {
    "conv2d_forward_tiled_kernel<3>", kFwdThreads, tiled_forward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(conv2d_forward_tiled_kernel<3>, kFwdThreads)};
const KernelVariant kConv2dForwardTiled5 = {
    "conv2d_forward_tiled_kernel<5>", kFwdThreads, tiled_forward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(conv2d_forward_tiled_kernel<5>, kFwdThreads)};
const KernelVariant kConv2dBackwardTiled3 = {
    "conv2d_backward_tiled_kernel<3>", kBwdThreads, tiled_backward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(conv2d_backward_tiled_kernel<3>, kBwdThreads)};
const KernelVariant kConv2dBackwardTiled5 = {
    "conv2d_backward_tiled_kernel<5>", kBwdThreads, tiled_backward_blocks,
    STIMLOOP_VARIANT_LAUNCHER(conv2d_backward_tiled_kernel<5>, kBwdThreads)};

}  // namespace stimloop::cuda
