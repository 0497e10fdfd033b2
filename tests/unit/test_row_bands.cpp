// Row bands sized by each thread's speed (kernels/cpu/row_bands.h): they always cover every row
// once, follow the measured speeds, and never change a result.
#include <omp.h>
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/row_bands.h"
#include "tests/support/reference_network.h"
#include "tests/unit/fast_kernel_checks.h"

namespace stimloop::cpu {
namespace {

// Band t's first row.
std::int64_t band_begin(const RowBands& b, int t) { return t == 0 ? 0 : b.end[t - 1]; }

// One region in which thread `slow` took `factor` times as long per row as the others.
void record_skewed(std::int64_t rows, int threads, int slow, double factor) {
  const RowBands b = plan_row_bands(rows, threads);
  double seconds[kMaxBandThreads];
  for (int t = 0; t < threads; ++t) {
    seconds[t] = 1e-6 * double(b.end[t] - band_begin(b, t)) * (t == slow ? factor : 1.0);
  }
  record_row_band_times(b, seconds);
}

class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(omp_get_max_threads()) {}
  ~ThreadCountGuard() {
    omp_set_num_threads(saved_);
    reset_row_band_shares();
  }

 private:
  int saved_;
};

}  // namespace

TEST_CASE("row bands cover every row once, in order", "[ops][bands]") {
  reset_row_band_shares();
  for (int threads : {2, 3, 7}) {
    plan_row_bands(1, threads);  // a new thread count starts from equal shares
    for (std::int64_t rows : {0, 1, 2, 5, 56, 112, 1000}) {
      CAPTURE(threads, rows);
      const RowBands b = plan_row_bands(rows, threads);
      REQUIRE(b.threads == threads);
      CHECK(b.end[threads - 1] == rows);
      for (int t = 0; t < threads; ++t) CHECK(band_begin(b, t) <= b.end[t]);
      if (rows >= threads) {  // equal shares: sizes differ by at most one row
        for (int t = 0; t < threads; ++t) {
          CHECK(b.end[t] - band_begin(b, t) >= rows / threads);
          CHECK(b.end[t] - band_begin(b, t) <= rows / threads + 1);
        }
      }
    }
  }
  reset_row_band_shares();
}

TEST_CASE("row bands follow the threads' measured speeds, within bounds", "[ops][bands]") {
  reset_row_band_shares();
  const std::int64_t rows = 1000;
  plan_row_bands(rows, 2);
  // Thread 1 twice as slow per row, region after region: its share goes to a third.
  for (int i = 0; i < 200; ++i) record_skewed(rows, 2, 1, 2.0);
  RowBands b = plan_row_bands(rows, 2);
  CHECK(b.end[0] == Approx(667).margin(5));
  // Equal speeds again: back to halves.
  for (int i = 0; i < 200; ++i) record_skewed(rows, 2, 1, 1.0);
  b = plan_row_bands(rows, 2);
  CHECK(b.end[0] == Approx(500).margin(5));
  // A thread a hundred times slower still keeps a quarter of an equal share.
  for (int i = 0; i < 400; ++i) record_skewed(rows, 2, 0, 100.0);
  b = plan_row_bands(rows, 2);
  CHECK(b.end[0] >= 120);
  CHECK(b.end[0] <= 140);
  // Timings too short to judge by change nothing.
  const RowBands before = plan_row_bands(rows, 2);
  const double tiny[2] = {1e-7, 5e-7};
  record_row_band_times(before, tiny);
  CHECK(plan_row_bands(rows, 2).end[0] == before.end[0]);
  reset_row_band_shares();
}

TEST_CASE("uneven row bands leave a layer's output unchanged, bit for bit", "[ops][bands]") {
  ThreadCountGuard guard;
  std::mt19937 rng(77);
  const LayerParams p = test::conv_params({37, 29, 3, 20, 5, 1});
  const int n = 2;
  const auto in = test::random_floats(n * p.in_size(), -1, 1, rng);
  const auto w = test::random_floats(p.weight_count(), -1, 1, rng);
  const auto bias = test::random_floats(p.out_c, -1, 1, rng);
  std::vector<float> one(n * p.out_size()), skewed(n * p.out_size());
  omp_set_num_threads(1);
  layer_forward(p, n, in.data(), w.data(), bias.data(), one.data());
  omp_set_num_threads(2);
  plan_row_bands(1, 2);
  for (int i = 0; i < 100; ++i) record_skewed(1000, 2, 0, 3.0);
  REQUIRE(plan_row_bands(n * p.out_h, 2).end[0] < n * p.out_h / 2);  // really uneven
  layer_forward(p, n, in.data(), w.data(), bias.data(), skewed.data());
  CHECK(test::first_bitwise_difference(skewed, one) == -1);
}

}  // namespace stimloop::cpu
