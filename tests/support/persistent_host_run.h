// The persistent synthesis program (kernels/persistent_step.h) run on the CPU with its serial
// executor: the same phases, item functions and buffer layout as the GPU kernel
// (kernels/cuda/persistent_synthesis.cu), so the unit tests check the program's arithmetic,
// indexing and phase order here, on machines without a GPU.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/device_synthesis.h"
#include "kernels/network.h"
#include "kernels/persistent_step.h"

namespace stimloop::test {

// An adversarial executor: every loop of a phase is held back until the phase's sync() and the
// loops then run last to first, each over its items last to first (a warp's lanes still in order,
// so sums keep their bits). A run gives the same bits as SerialExecutor's exactly when no item
// reads what another item of its phase writes and no sync() is missing -- the conditions for the
// GPU to run a phase's items all at once. (A phase's loops and its sync() sit in one function of
// the program, so the loops' captured references are alive until the sync.)
class ReverseExecutor {
 public:
  template <class F>
  void for_each(std::int64_t n, F&& f) {
    pending_.push_back([n, f = std::forward<F>(f)]() mutable {
      for (std::int64_t i = n; i-- > 0;) f(i);
    });
  }
  template <class Partial, class Consume>
  void warp_reduce(std::int64_t n, Partial&& partial, Consume&& consume) {
    pending_.push_back([n, partial = std::forward<Partial>(partial),
                        consume = std::forward<Consume>(consume)]() mutable {
      for (std::int64_t i = n; i-- > 0;) {
        auto total = partial(i, 0, persistent::kLanes);
        for (int lane = 1; lane < persistent::kLanes; ++lane) {
          total += partial(i, lane, persistent::kLanes);
        }
        for (int lane = 0; lane < persistent::kLanes; ++lane) consume(i, lane, total);
      }
    });
  }
  void sync() {
    for (std::size_t k = pending_.size(); k-- > 0;) pending_[k]();
    pending_.clear();
  }

 private:
  std::vector<std::function<void()>> pending_;
};

struct HostTarget {
  std::shared_ptr<const Network> network;
  int output = 0;
  double sign = 1.0;
  double initial_best = 0.0;
  int count = 0;
  std::vector<double> images;  // count x input size, re-centered
};

class PersistentHostRun {
 public:
  // Uploads nothing: every buffer is a host vector. Runs the initial evaluation.
  // reverse_items: run with ReverseExecutor (phases' loops and items last to first).
  static StatusOr<std::unique_ptr<PersistentHostRun>> create(const Cowley2026Settings& settings,
                                                             std::vector<HostTarget> targets,
                                                             bool reverse_items = false);
  void run(int steps) { run_steps(steps, false); }

  const persistent::Plan& plan() const { return plan_; }
  const std::vector<double>& best_values() const { return best_value_; }
  const std::vector<double>& best_responses() const { return best_response_; }
  const std::vector<int>& has_best() const { return has_best_; }
  // The best image (or the current one where none improved), rounded to 8 bits (raw 0..255).
  std::vector<std::uint8_t> best_rgb8() const;

 private:
  struct TargetState {
    HostTarget target;
    int first_image = 0;
    std::vector<std::vector<float>> activations;
    std::vector<float> grad_a, grad_b, seed;
    std::vector<float> top_grad;  // the constant gradient at the last layer's input
    // Per layer: the plan's weight copies (transposed, padded), which the table points into.
    std::deque<persistent::LayerWeightCopies> weight_copies;
  };
  PersistentHostRun() = default;

  void run_steps(int steps, bool evaluate_first);
  template <class Exec>
  void evaluate_and_run(Exec& ex, int steps, bool evaluate_first);

  Cowley2026Settings settings_;
  bool reverse_items_ = false;
  std::vector<TargetState> targets_;
  int h_ = 0, w_ = 0, n_ = 0, steps_done_ = 0;
  std::vector<float> input_, d_input_;
  std::vector<double> x_, best_, scratch_, best_value_, best_response_, row_sums_;
  std::vector<int> improved_, has_best_;
  std::vector<ImageSlot> slots_;
  std::vector<persistent::PlanLayer> table_;
  persistent::Plan plan_;
};

}  // namespace stimloop::test
