// The persistent synthesis kernel: kernels/persistent_step.h's program with a grid of resident
// blocks as its executor. Items of a phase are spread over all threads of the grid (plain form)
// or over its warps (split form, reduced by a fixed shuffle tree: deterministic); phases end in
// cooperative_groups' grid barrier, which also orders the phase's global writes before the next
// phase's reads. No operand is read through the non-coherent (__ldg) path: the kernel writes
// what it later reads.
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/persistent_synthesis.h"

namespace stimloop::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = kPersistentThreads;
constexpr unsigned int kFullMask = 0xffffffffu;

// Warp shuffles of a lane's partial sum: one value, or each of a Sums' values.
template <class T>
__device__ T shuffle_down(T v, int offset) {
  return __shfl_down_sync(kFullMask, v, offset);
}
template <int N>
__device__ persistent::Sums<N> shuffle_down(persistent::Sums<N> v, int offset) {
  for (int k = 0; k < N; ++k) v.v[k] = __shfl_down_sync(kFullMask, v.v[k], offset);
  return v;
}
template <class T>
__device__ T from_lane0(T v) {
  return __shfl_sync(kFullMask, v, 0);
}
template <int N>
__device__ persistent::Sums<N> from_lane0(persistent::Sums<N> v) {
  for (int k = 0; k < N; ++k) v.v[k] = __shfl_sync(kFullMask, v.v[k], 0);
  return v;
}

struct GridExecutor {
  cg::grid_group grid = cg::this_grid();
  // Profiling (nullptr otherwise): thread 0's SM clock at the start and after each barrier.
  unsigned long long* phase_clock = nullptr;
  int phase_capacity = 0, phase = 0;

  template <class F>
  __device__ void for_each(std::int64_t n, F&& f) {
    const std::int64_t stride = static_cast<std::int64_t>(grid.num_threads());
    for (std::int64_t i = static_cast<std::int64_t>(grid.thread_rank()); i < n; i += stride) f(i);
  }

  // One item per warp at a time; the loop bounds are the same for every lane of a warp, so the
  // full-mask shuffles never see an exited lane.
  template <class Partial, class Consume>
  __device__ void warp_reduce(std::int64_t n, Partial&& partial, Consume&& consume) {
    const int lane = static_cast<int>(threadIdx.x % persistent::kLanes);
    const std::int64_t warp = static_cast<std::int64_t>(grid.thread_rank()) / persistent::kLanes;
    const std::int64_t warps = static_cast<std::int64_t>(grid.num_threads()) / persistent::kLanes;
    for (std::int64_t i = warp; i < n; i += warps) {
      auto v = partial(i, lane, persistent::kLanes);
      for (int offset = persistent::kLanes / 2; offset > 0; offset /= 2) {
        v += shuffle_down(v, offset);
      }
      v = from_lane0(v);  // lane 0's tree sum, the same bits on every lane
      consume(i, lane, v);
    }
  }

  __device__ void sync() {
    grid.sync();
    if (phase_clock != nullptr) record_phase_end();
  }
  __device__ void record_phase_end() {
    if (grid.thread_rank() == 0 && phase < phase_capacity) phase_clock[phase] = clock64();
    ++phase;
  }
};

// 512 threads, one block an SM, at most 128 registers a thread: the blocked items keep eight
// accumulators (ptxas: exactly 128 registers, no spills, on sm_80 and sm_90 -- no headroom; the
// build passes -warn-spills so growth shows), and one block an SM halves the arrivals each grid
// barrier serialises (132 on an H100/H200, not 264).
__global__ void __launch_bounds__(kThreads, 1)
    persistent_steps_kernel(const __grid_constant__ persistent::Plan plan, int first_step,
                            int steps, int blur_every, int evaluate_first,
                            unsigned long long* phase_clock, int phase_capacity) {
  GridExecutor ex;
  ex.phase_clock = phase_clock;
  ex.phase_capacity = phase_capacity;
  if (phase_clock != nullptr) ex.record_phase_end();  // the start
  if (evaluate_first != 0) persistent::initial_evaluation(ex, plan);
  for (int s = 0; s < steps; ++s) {
    persistent::step(ex, plan, persistent::is_blur_step(first_step + s, blur_every));
  }
}

// Barriers and nothing else, for the cost of one (persistent_barrier_us).
__global__ void __launch_bounds__(kThreads, 1) empty_barriers_kernel(int barriers) {
  cg::grid_group grid = cg::this_grid();
  for (int k = 0; k < barriers; ++k) grid.sync();
}

}  // namespace

StatusOr<int> persistent_grid_blocks() {
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  int cooperative = 0, sms = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  if (cooperative == 0) return failed_precondition("this GPU has no cooperative launch");
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  int per_sm = 0;
  CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_steps_kernel, kThreads, 0));
  if (per_sm <= 0) return failed_precondition("the persistent kernel does not fit on an SM");
  int blocks = sms * per_sm;
  if (const char* cap = std::getenv("STIMLOOP_PERSISTENT_BLOCKS"); cap != nullptr) {
    const int wanted = std::atoi(cap);
    if (wanted > 0) blocks = std::min(blocks, wanted);
  }
  return blocks;
}

Status launch_persistent_steps(const persistent::Plan& plan, int blocks, int first_step, int steps,
                               int blur_every, bool evaluate_first, cudaStream_t stream,
                               unsigned long long* phase_clock, int phase_capacity) {
  if (steps <= 0 && !evaluate_first) return Status::Ok();
  int evaluate = evaluate_first ? 1 : 0;
  void* args[] = {const_cast<persistent::Plan*>(&plan),
                  &first_step,
                  &steps,
                  &blur_every,
                  &evaluate,
                  &phase_clock,
                  &phase_capacity};
  CUDA_RETURN_IF_ERROR(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(persistent_steps_kernel),
                                                   dim3(blocks), dim3(kThreads), args, 0, stream));
  return check_launch("persistent_steps_kernel");
}

StatusOr<double> persistent_barrier_us(int blocks, cudaStream_t stream) {
  constexpr int kBarriers = 2000;
  EventPair events;
  CUDA_RETURN_IF_ERROR(events.create());
  int barriers = kBarriers;
  void* args[] = {&barriers};
  CUDA_RETURN_IF_ERROR(cudaEventRecord(events.start, stream));
  CUDA_RETURN_IF_ERROR(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(empty_barriers_kernel),
                                                   dim3(blocks), dim3(kThreads), args, 0, stream));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(events.stop, stream));
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(events.stop));
  float ms = 0;
  CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events.start, events.stop));
  return 1e3 * ms / kBarriers;
}

}  // namespace stimloop::cuda
