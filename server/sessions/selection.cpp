// Choosing the next images of a pool from predicted responses.
//
// Adept (Cowley, Williamson, Acar, Smith & Yu, "Adaptive stimulus selection for optimizing neural
// population responses", NeurIPS 2017). The paper's population objective for a candidate whose
// population response is r, after responses r_1..r_{t-1} have been elicited, is
//     f(r) = ||r||_2 + 1/(t-1) * sum_j ||r - r_j||_2
// (large responses that are also far from what was already seen). Adept cannot measure r before
// showing the image, so it predicts it (kernel regression on CNN embeddings, fitted to the
// responses recorded so far) and, to fill a block of several images, chooses greedily: each pick
// maximises f of its predicted response, then joins the set of "previous" responses with its
// prediction so the next pick is pushed away from it. With nothing seen yet the mean-distance term
// is empty and only the norm counts.
//
// Where this implementation deviates: the predictions come from the session's compact CNN models
// (or whatever the caller passes), not from kernel regression; `already_shown` holds whatever the
// caller has for earlier images (recorded responses in the paper); and the candidates are the
// eligible images of a finite pool rather than an unbounded image stream. Scores are accumulated in
// double so the choice does not depend on float summation order; ties go to the lowest index.
#include "server/sessions/selection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "server/synthesis/rng.h"

namespace stimloop::sessions {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

bool is_eligible(std::span<const bool> eligible, int i) {
  // A mask shorter than the pool leaves the rest ineligible rather than reading past its end.
  return i >= 0 && static_cast<std::size_t>(i) < eligible.size() && eligible[i];
}

// NaN scores (a model that produced NaN) rank below every real score but stay choosable, so a
// block is still filled, lowest index first.
double rankable(double score) { return std::isnan(score) ? kNegInf : score; }

double distance(const float* a, const float* b, int channels) {
  double sum = 0.0;
  for (int c = 0; c < channels; ++c) {
    const double d = static_cast<double>(a[c]) - static_cast<double>(b[c]);
    sum += d * d;
  }
  return std::sqrt(sum);
}

}  // namespace

std::vector<int> select_random(int pool_size, std::span<const bool> eligible, int count,
                               std::uint64_t seed) {
  std::vector<int> candidates;
  for (int i = 0; i < pool_size; ++i) {
    if (is_eligible(eligible, i)) candidates.push_back(i);
  }
  const int n = static_cast<int>(candidates.size());
  const int k = std::clamp(count, 0, n);
  // Partial Fisher-Yates: position i receives a uniform draw from the not-yet-chosen tail, so
  // every k-subset (in every order) is equally likely and only k draws are made.
  synthesis::Rng rng(seed);
  for (int i = 0; i < k; ++i) {
    const int j = rng.uniform_int(i, n - 1);
    std::swap(candidates[i], candidates[j]);
  }
  candidates.resize(k);
  return candidates;
}

std::vector<int> select_adept(std::span<const float> predicted, int pool_size, int channels,
                              std::span<const bool> eligible, std::span<const float> already_shown,
                              int count) {
  if (channels <= 0 || pool_size <= 0 || count <= 0) return {};
  // Never read past the spans, whatever the sizes claim.
  const auto width = static_cast<std::size_t>(channels);
  pool_size = static_cast<int>(std::min<std::size_t>(pool_size, predicted.size() / width));
  const int shown = static_cast<int>(already_shown.size() / width);

  std::vector<double> norm(pool_size), distance_sum(pool_size, 0.0);
  for (int i = 0; i < pool_size; ++i) {
    const float* r = predicted.data() + i * width;
    norm[i] =
        std::sqrt(std::inner_product(r, r + channels, r, 0.0, std::plus<>(),
                                     [](float a, float b) { return static_cast<double>(a) * b; }));
    for (int j = 0; j < shown; ++j) {
      distance_sum[i] += distance(r, already_shown.data() + j * width, channels);
    }
  }

  std::vector<bool> taken(pool_size, false);
  std::vector<int> chosen;
  int previous = shown;  // how many responses the mean distance runs over
  while (static_cast<int>(chosen.size()) < count) {
    int best = -1;
    double best_score = kNegInf;
    for (int i = 0; i < pool_size; ++i) {
      if (taken[i] || !is_eligible(eligible, i)) continue;
      const double diversity = previous > 0 ? distance_sum[i] / previous : 0.0;
      const double score = rankable(norm[i] + diversity);
      if (best < 0 || score > best_score) {
        best = i;
        best_score = score;
      }
    }
    if (best < 0) break;  // fewer eligible candidates than asked for
    taken[best] = true;
    chosen.push_back(best);
    // The pick's predicted response now counts as seen: every candidate's distance sum grows by
    // its distance to it, which is what pushes the next pick away from this one.
    const float* picked = predicted.data() + best * width;
    for (int i = 0; i < pool_size; ++i) {
      if (!taken[i]) distance_sum[i] += distance(predicted.data() + i * width, picked, channels);
    }
    ++previous;
  }
  return chosen;
}

std::vector<int> select_committee(std::span<const float> predictions, int members, int pool_size,
                                  int channels, std::span<const bool> eligible, int count) {
  if (members <= 0 || pool_size <= 0 || channels <= 0 || count <= 0) return {};
  const auto plane = static_cast<std::size_t>(pool_size) * channels;
  if (predictions.size() < plane * members) return {};
  auto at = [&](int member, int i, int c) {
    return static_cast<double>(
        predictions[member * plane + static_cast<std::size_t>(i) * channels + c]);
  };

  // Per candidate and channel: the committee mean and the variance across members.
  std::vector<double> mean(plane), variance(plane);
  for (int i = 0; i < pool_size; ++i) {
    for (int c = 0; c < channels; ++c) {
      double sum = 0.0;
      for (int m = 0; m < members; ++m) sum += at(m, i, c);
      const double mu = sum / members;
      double sq = 0.0;
      for (int m = 0; m < members; ++m) sq += (at(m, i, c) - mu) * (at(m, i, c) - mu);
      mean[static_cast<std::size_t>(i) * channels + c] = mu;
      variance[static_cast<std::size_t>(i) * channels + c] = sq / members;
    }
  }

  // Each channel's scale: the variance of its committee mean over the whole pool, so a channel
  // whose responses span a larger range does not win just by its units. A channel whose committee
  // mean is constant over the pool has no scale to divide by and is left out; if every channel is,
  // the raw variances are used rather than choosing blindly.
  std::vector<double> inverse_scale(channels, 0.0);
  bool any_scaled = false;
  for (int c = 0; c < channels; ++c) {
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < pool_size; ++i) sum += mean[static_cast<std::size_t>(i) * channels + c];
    const double mu = sum / pool_size;
    for (int i = 0; i < pool_size; ++i) {
      const double d = mean[static_cast<std::size_t>(i) * channels + c] - mu;
      sq += d * d;
    }
    const double scale = sq / pool_size;
    if (scale > 0.0 && std::isfinite(scale)) {
      inverse_scale[c] = 1.0 / scale;
      any_scaled = true;
    }
  }
  if (!any_scaled) std::fill(inverse_scale.begin(), inverse_scale.end(), 1.0);

  std::vector<double> disagreement(pool_size, 0.0);
  std::vector<int> candidates;
  for (int i = 0; i < pool_size; ++i) {
    if (!is_eligible(eligible, i)) continue;
    double sum = 0.0;
    for (int c = 0; c < channels; ++c) {
      sum += variance[static_cast<std::size_t>(i) * channels + c] * inverse_scale[c];
    }
    disagreement[i] = rankable(sum / channels);
    candidates.push_back(i);
  }
  const int k = std::min<int>(count, static_cast<int>(candidates.size()));
  std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(),
                    [&](int a, int b) {
                      if (disagreement[a] != disagreement[b]) {
                        return disagreement[a] > disagreement[b];
                      }
                      return a < b;
                    });
  candidates.resize(k);
  return candidates;
}

}  // namespace stimloop::sessions
