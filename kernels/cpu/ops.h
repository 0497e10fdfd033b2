// CPU implementations of the three ops, forward and backward-to-input, for a batch of n images
// in channels-last float32. Multi-threaded with OpenMP over output rows (forward) or input rows
// (backward); every output element is computed by one thread in a fixed order, so results do
// not depend on the thread count. Backward functions take the gradient with respect to the op's
// pre-activation output (the caller applies the ReLU mask) and overwrite d_in.
#pragma once

#include <omp.h>

#include <cstdint>

#include "kernels/cpu/row_bands.h"
#include "kernels/layer_params.h"

namespace stimloop::cpu {

// Threads pay off only for layers with enough work. Each parallel region costs a fork and a
// barrier: microseconds on an idle machine, but milliseconds when another process holds a core
// (the barrier waits for a descheduled thread), and most layers of the compact models are tiny
// at batch 1 (a synthesis step for one rig stimulus). Rows go to the threads in contiguous bands
// in the same proportions for every layer (for_each_row), so each layer reads mostly what its
// own core just wrote: handed out dynamically, half of every activation moved between
// the cores' caches, and two threads gained nothing at batch 1 (forward 1.10 ms against 0.61 ms
// static, 2-core VM). Every row is computed by one thread in a fixed order, so results do not
// depend on the thread count or the schedule.
// 1 M multiply-accumulates takes in the depthwise layers 1 and 2 (3.6 M and 1.2 M): with them
// serial, the idle thread went to sleep between layer 0 and the pointwise layers and paid a
// wake-up in every gap (a 1000-step synthesis on 2 threads 3.43 s -> 2.85 s, 2-core VM).
inline constexpr std::int64_t kParallelMinMacs = 1'000'000;
// Inside an active parallel region (the backend giving each thread whole images) a layer runs on
// the calling thread alone.
inline bool worth_threads(const LayerParams& p, int n) {
  return p.macs() * n >= kParallelMinMacs && !omp_in_parallel();
}

// body(r) for every r in [0, rows): in contiguous bands over the threads, sized by each thread's
// recent speed (row_bands.h), when `threads`; else a plain loop on this thread. Not `omp parallel
// for if (threads)`: a region whose if clause is false still builds a team of one at every call,
// an allocation, and inside another parallel region futex system calls too (a thread running
// whole images through a compact model's ten layers spent a fifth of its time in the kernel).
template <typename Index, typename Body>
inline void for_each_row(Index rows, bool threads, const Body& body) {
  const int team = threads ? omp_get_max_threads() : 1;
  if (team < 2 || team > kMaxBandThreads) {
    for (Index r = 0; r < rows; ++r) body(r);
    return;
  }
  const RowBands bands = plan_row_bands(rows, team);
  double seconds[kMaxBandThreads];
  bool planned_team = true;
#pragma omp parallel num_threads(team)
  {
    if (omp_get_num_threads() != team) {  // the runtime gave fewer threads: plain static bands
      planned_team = false;
#pragma omp for schedule(static)
      for (Index r = 0; r < rows; ++r) body(r);
    } else {
      const int t = omp_get_thread_num();
      const Index end = static_cast<Index>(bands.end[t]);
      const double start = omp_get_wtime();
      for (Index r = t == 0 ? 0 : static_cast<Index>(bands.end[t - 1]); r < end; ++r) body(r);
      seconds[t] = omp_get_wtime() - start;
    }
  }
  if (planned_team) record_row_band_times(bands, seconds);
}

// out[b,oy,ox,co] = bias[co] + sum_{ky,kx,ci} in[b, oy*s+ky-pad, ox*s+kx-pad, ci] * w[ky,kx,ci,co]
void conv2d_forward(const LayerParams& p, int n, const float* in, const float* w, const float* bias,
                    float* out);
void conv2d_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                           float* d_in);
// The same with AVX2 + FMA (conv2d_avx2.cpp); only to be called when use_avx2() says so.
void conv2d_forward_avx2(const LayerParams& p, int n, const float* in, const float* w,
                         const float* bias, float* out);
void conv2d_backward_input_avx2(const LayerParams& p, int n, const float* d_out, const float* w,
                                float* d_in);
// The same with AVX-512F (conv2d_avx512.cpp, conv2d_avx512_backward.cpp); only to be called when
// use_avx512() says so. Unlike the others, the forward applies p.relu itself, in its store (a
// separate pass over layer 0's output costs a sixth of the convolution). Shapes they do not cover
// (backward with stride > 1, a Dense layer's backward) go on to the AVX2 kernels, which every
// AVX-512 processor can run.
void conv2d_forward_avx512(const LayerParams& p, int n, const float* in, const float* w,
                           const float* bias, float* out);
void conv2d_backward_input_avx512(const LayerParams& p, int n, const float* d_out, const float* w,
                                  float* d_in);

// out[b,oy,ox,c] = bias[c] + sum_{ky,kx} in[b, oy*s+ky-pad, ox*s+kx-pad, c] * w[ky,kx,c]
void depthwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                       const float* bias, float* out);
// in_relu (optional): the op's input, itself a ReLU's output; d_in is zero where it is <= 0 (the
// mask the layer below would otherwise apply in a pass of its own), exactly as that pass.
void depthwise_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                              float* d_in, const float* in_relu = nullptr);
// The same with AVX2 + FMA (depthwise_avx2.cpp); only to be called when use_avx2() says so,
// and for kernels of at most kMaxTaps a side.
inline constexpr int kMaxTaps = 64;
void depthwise_forward_avx2(const LayerParams& p, int n, const float* in, const float* w,
                            const float* bias, float* out);
void depthwise_backward_input_avx2(const LayerParams& p, int n, const float* d_out, const float* w,
                                   float* d_in, const float* in_relu = nullptr);
// The same with AVX-512F (depthwise_avx512.cpp), when use_avx512(); identical results.
void depthwise_forward_avx512(const LayerParams& p, int n, const float* in, const float* w,
                              const float* bias, float* out);
void depthwise_backward_input_avx512(const LayerParams& p, int n, const float* d_out,
                                     const float* w, float* d_in, const float* in_relu = nullptr);

// out[b,y,x,co] = bias[co] + sum_ci in[b,y,x,ci] * w[ci,co]   (also Flatten + Dense)
void pointwise_forward(const LayerParams& p, int n, const float* in, const float* w,
                       const float* bias, float* out);
void pointwise_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                              float* d_in);

// Dispatch on p.kind (and to the AVX-512 / AVX2 kernels where use_avx512() / use_avx2());
// applies the fused ReLU in forward.
void layer_forward(const LayerParams& p, int n, const float* in, const float* w, const float* bias,
                   float* out);
// in_relu as for depthwise_backward_input: fused into the depthwise kernels, a separate
// vectorised pass after the others.
void layer_backward_input(const LayerParams& p, int n, const float* d_out, const float* w,
                          float* d_in, const float* in_relu = nullptr);

}  // namespace stimloop::cpu
