// The persistent synthesis kernel (kernels/persistent_step.h on the GPU): one cooperative launch
// runs whole cowley2026 steps, its phases separated by grid-wide barriers. Used by
// device_synthesis.cu when STIMLOOP_CUDA_STEP=persistent.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/persistent_step.h"

namespace stimloop::cuda {

constexpr int kPersistentThreads = 512;  // per block, one block an SM

// Blocks of the persistent grid on the current device: every block resident at once (what a
// grid barrier needs), capped by STIMLOOP_PERSISTENT_BLOCKS when set. FAILED_PRECONDITION where
// the device has no cooperative launch.
StatusOr<int> persistent_grid_blocks();

// Runs (evaluate_first: the initial forward and backward, then) `steps` steps from step index
// `first_step`; the image blur follows steps t > 0 with t % blur_every == 0 (0: never).
// Profiling: with `phase_clock` (device memory, phase_capacity entries) block 0's thread 0 writes
// its SM clock (clock64) at the start and after every barrier, as far as the entries reach (the
// first phase so includes the other blocks' later start).
Status launch_persistent_steps(const persistent::Plan& plan, int blocks, int first_step, int steps,
                               int blur_every, bool evaluate_first, cudaStream_t stream,
                               unsigned long long* phase_clock = nullptr, int phase_capacity = 0);

// The mean time of one grid barrier of the persistent grid (`blocks` blocks of
// kPersistentThreads threads) with nothing between barriers: the floor of a phase.
StatusOr<double> persistent_barrier_us(int blocks, cudaStream_t stream);

}  // namespace stimloop::cuda
