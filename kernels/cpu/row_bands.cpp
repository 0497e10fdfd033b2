// Compiled without -m flags (see scratch.h): called from every kernel file.
#include "kernels/cpu/row_bands.h"

#include <algorithm>
#include <mutex>

namespace stimloop::cpu {
namespace {

// Each thread's share of the rows, summing to 1. Calls from several caller threads at once (a
// rig's and a campaign's synthesis) race only on these estimates, never on a region's bands,
// which each call computes once from one snapshot.
std::mutex g_mutex;
int g_threads = 0;
double g_share[kMaxBandThreads];

// How far one region's timing moves the shares: a tenth, so a single descheduled band (a
// millisecond-long stall) does not swing the split.
constexpr double kStep = 0.1;
// Timings below this are mostly fork and barrier noise.
constexpr double kMinSeconds = 20e-6;
// No thread gets less than this fraction of an equal share.
constexpr double kMinFraction = 0.25;

void reset_locked(int threads) {
  g_threads = threads;
  std::fill(g_share, g_share + kMaxBandThreads, 0.0);
  std::fill(g_share, g_share + threads, 1.0 / threads);
}

}  // namespace

RowBands plan_row_bands(std::int64_t rows, int threads) {
  RowBands bands;
  bands.threads = std::clamp(threads, 1, kMaxBandThreads);
  double share[kMaxBandThreads];
  {
    std::lock_guard lock(g_mutex);
    if (g_threads != bands.threads) reset_locked(bands.threads);
    std::copy(g_share, g_share + bands.threads, share);
  }
  double cumulative = 0.0;
  std::int64_t previous = 0;
  for (int t = 0; t < bands.threads; ++t) {
    cumulative += share[t];
    std::int64_t end =
        t + 1 == bands.threads ? rows : static_cast<std::int64_t>(cumulative * double(rows) + 0.5);
    end = std::clamp(end, previous, rows);
    bands.end[t] = previous = end;
  }
  return bands;
}

void record_row_band_times(const RowBands& bands, const double* seconds) {
  const int n = bands.threads;
  double speed[kMaxBandThreads], total = 0.0;
  std::int64_t begin = 0;
  for (int t = 0; t < n; ++t) {
    const std::int64_t rows = bands.end[t] - begin;
    begin = bands.end[t];
    if (rows <= 0 || seconds[t] < kMinSeconds) return;  // too little to judge by
    speed[t] = double(rows) / seconds[t];
    total += speed[t];
  }
  std::lock_guard lock(g_mutex);
  if (g_threads != n) return;
  double sum = 0.0;
  for (int t = 0; t < n; ++t) {
    const double target = speed[t] / total;
    g_share[t] = std::max((1.0 - kStep) * g_share[t] + kStep * target, kMinFraction / n);
    sum += g_share[t];
  }
  for (int t = 0; t < n; ++t) g_share[t] /= sum;
}

void reset_row_band_shares() {
  std::lock_guard lock(g_mutex);
  reset_locked(g_threads > 0 ? g_threads : 1);
}

}  // namespace stimloop::cpu
