// How the rows of a layer are split among the threads: contiguous bands, sized by how fast each
// thread got through its band in the layers before. On an idle machine with equal cores this
// settles on equal bands (a static schedule); on a shared machine one core is often slower (a
// virtual CPU whose physical core another guest also uses), and equal bands left the faster
// thread waiting at every layer's barrier for a fifth of a synthesis step (2-core VM, perf).
// Handing rows out dynamically instead costs each core its cache (26 % slower). Which thread
// computes a row never changes the row's result.
#pragma once

#include <cstdint>

namespace stimloop::cpu {

inline constexpr int kMaxBandThreads = 64;

struct RowBands {
  int threads = 0;
  std::int64_t end[kMaxBandThreads] = {};  // band t is [t == 0 ? 0 : end[t - 1], end[t])
};

// Bands of `rows` for `threads` (2 .. kMaxBandThreads) threads from the current shares.
RowBands plan_row_bands(std::int64_t rows, int threads);
// After a region that ran `bands`: seconds[t] is how long thread t took for its band.
void record_row_band_times(const RowBands& bands, const double* seconds);
// Back to equal shares (tests; a new thread count does this by itself).
void reset_row_band_shares();

}  // namespace stimloop::cpu
