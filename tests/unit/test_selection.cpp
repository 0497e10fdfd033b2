// Choosing images from a pool: random (reproducible, uniform), Adept (greedy norm + diversity) and
// query by committee (scale-normalised disagreement).
#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "server/sessions/selection.h"
#include "server/synthesis/rng.h"

using stimloop::sessions::select_adept;
using stimloop::sessions::select_committee;
using stimloop::sessions::select_random;

namespace {

// std::vector<bool> is packed and cannot back a std::span<const bool>, so masks are plain arrays.
struct Mask {
  explicit Mask(int n, bool value = true) : flags(new bool[n]), size(n) {
    std::fill(flags.get(), flags.get() + n, value);
  }
  std::span<const bool> span() const { return {flags.get(), static_cast<std::size_t>(size)}; }
  bool& operator[](int i) { return flags[i]; }
  std::unique_ptr<bool[]> flags;
  int size;
};

bool all_distinct(const std::vector<int>& v) {
  return std::set<int>(v.begin(), v.end()).size() == v.size();
}

// The greedy Adept objective, written out plainly: at each step, for every remaining eligible
// candidate, the norm of its response plus its mean distance to every response already shown or
// already chosen; the best (lowest index on ties) is taken.
std::vector<int> adept_brute_force(const std::vector<float>& predicted, int n, int channels,
                                   const Mask& eligible, const std::vector<float>& shown,
                                   int count) {
  auto row = [&](const std::vector<float>& m, int i) { return m.data() + i * channels; };
  auto dist = [&](const float* a, const float* b) {
    double s = 0;
    for (int c = 0; c < channels; ++c) s += (double(a[c]) - b[c]) * (double(a[c]) - b[c]);
    return std::sqrt(s);
  };
  const std::vector<float> zero(channels, 0.f);
  std::vector<int> chosen;
  while (static_cast<int>(chosen.size()) < count) {
    int best = -1;
    double best_score = 0;
    for (int i = 0; i < n; ++i) {
      if (!eligible.flags[i] || std::count(chosen.begin(), chosen.end(), i)) continue;
      std::vector<const float*> previous;
      for (int j = 0; j < static_cast<int>(shown.size()) / channels; ++j) {
        previous.push_back(row(shown, j));
      }
      for (int j : chosen) previous.push_back(row(predicted, j));
      double mean = 0;
      for (const float* p : previous) mean += dist(row(predicted, i), p);
      if (!previous.empty()) mean /= previous.size();
      const double score = dist(row(predicted, i), zero.data()) + mean;
      if (best < 0 || score > best_score) {
        best = i;
        best_score = score;
      }
    }
    if (best < 0) break;
    chosen.push_back(best);
  }
  return chosen;
}

std::vector<float> random_matrix(int rows, int cols, std::uint64_t seed, double scale = 1.0) {
  stimloop::synthesis::Rng rng(seed);
  std::vector<float> m(static_cast<std::size_t>(rows) * cols);
  for (float& x : m) x = static_cast<float>(scale * rng.uniform());
  return m;
}

}  // namespace

TEST_CASE("select_random is reproducible, distinct and only eligible", "[selection]") {
  Mask eligible(50);
  for (int i = 0; i < 50; i += 3) eligible[i] = false;
  const auto a = select_random(50, eligible.span(), 20, 42);
  const auto b = select_random(50, eligible.span(), 20, 42);
  CHECK(a == b);
  REQUIRE(a.size() == 20);
  CHECK(all_distinct(a));
  for (int i : a) {
    CHECK(i >= 0);
    CHECK(i < 50);
    CHECK(i % 3 != 0);
  }
  // Another seed gives another choice (the chance of equal 20-sequences is negligible).
  CHECK(select_random(50, eligible.span(), 20, 43) != a);
}

TEST_CASE("select_random returns every eligible index when asked for more", "[selection]") {
  Mask eligible(10, false);
  eligible[2] = eligible[5] = eligible[9] = true;
  auto got = select_random(10, eligible.span(), 7, 1);
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<int>{2, 5, 9});
  CHECK(select_random(10, eligible.span(), 0, 1).empty());
  CHECK(select_random(10, Mask(10, false).span(), 3, 1).empty());
}

TEST_CASE("select_random is roughly uniform", "[selection]") {
  // 10 of 40 over 4000 seeds: each index expects 1000 picks (sd ~27); 4000 first picks expect 100
  // per index (sd ~10). Bounds are ~6 sd wide so the test is stable but catches gross bias.
  Mask eligible(40);
  std::vector<int> picks(40, 0), first(40, 0);
  for (std::uint64_t seed = 0; seed < 4000; ++seed) {
    const auto got = select_random(40, eligible.span(), 10, seed);
    for (int i : got) ++picks[i];
    ++first[got.front()];
  }
  for (int i = 0; i < 40; ++i) {
    INFO("index " << i);
    CHECK(picks[i] > 840);
    CHECK(picks[i] < 1160);
    CHECK(first[i] > 50);
    CHECK(first[i] < 150);
  }
}

TEST_CASE("select_adept picks the largest response, then a far one over a near duplicate",
          "[selection]") {
  // 0: large; 1: near duplicate of 0 (also large); 2: smaller but far away from 0; 3: small.
  const std::vector<float> predicted = {10,   0,     //
                                        9.9f, 0.1f,  //
                                        0,    6,     //
                                        1,    1};
  Mask eligible(4);
  const auto got = select_adept(predicted, 4, 2, eligible.span(), {}, 2);
  // Step 2: candidate 1 scores 9.9 + 0.14; candidate 2 scores 6 + 11.66.
  CHECK(got == std::vector<int>{0, 2});

  // An earlier response at (0, 6) makes 2 a duplicate of what was already shown: 0 still comes
  // first, and then 1 (large, far from the earlier response) beats 2.
  const std::vector<float> shown = {0, 6};
  CHECK(select_adept(predicted, 4, 2, eligible.span(), shown, 2) == std::vector<int>{0, 1});

  eligible[0] = false;
  const auto without0 = select_adept(predicted, 4, 2, eligible.span(), {}, 4);
  CHECK(without0.size() == 3);
  CHECK(std::find(without0.begin(), without0.end(), 0) == without0.end());
  CHECK(without0.front() == 1);
}

TEST_CASE("select_adept matches a brute-force greedy evaluation", "[selection]") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const int n = 30, channels = 5;
    const auto predicted = random_matrix(n, channels, seed, 3.0);
    const auto shown = random_matrix(static_cast<int>(seed % 4), channels, seed + 100, 3.0);
    Mask eligible(n);
    for (int i = 0; i < n; ++i) eligible[i] = (i * 7 + seed) % 5 != 0;
    INFO("seed " << seed);
    const auto got = select_adept(predicted, n, channels, eligible.span(), shown, 8);
    CHECK(got == adept_brute_force(predicted, n, channels, eligible, shown, 8));
    CHECK(all_distinct(got));
  }
}

TEST_CASE("select_adept breaks ties by the lowest index", "[selection]") {
  const std::vector<float> predicted = {1, 1, 3, 3, 3, 3, 1, 1};
  Mask eligible(4);
  CHECK(select_adept(predicted, 4, 2, eligible.span(), {}, 1) == std::vector<int>{1});
}

TEST_CASE("select_committee prefers disagreement and normalises each channel", "[selection]") {
  // members x pool x channels = 2 x 3 x 1. Candidate 1 is where the members disagree.
  const std::vector<float> one_channel = {1, 2, 3,  //
                                          1, 5, 3};
  Mask eligible(3);
  CHECK(select_committee(one_channel, 2, 3, 1, eligible.span(), 1) == std::vector<int>{1});
  eligible[1] = false;
  const auto rest = select_committee(one_channel, 2, 3, 1, eligible.span(), 3);
  CHECK(rest == std::vector<int>{0, 2});  // equal (zero) disagreement: lowest index first

  // Two channels, the second in units ~10000 times larger. Candidate 0 disagrees by 1000 on the
  // large channel, whose committee mean spans +-10000 over the pool (a small relative
  // disagreement); candidate 1 disagrees by 2 on the small channel, whose mean spans only +-1
  // (a large one). Without the per-channel scale candidate 0 would win (variance 250000 vs 1).
  // Layout: member, candidate, channel.
  const std::vector<float> two_channels = {
      0, 0,    0, 0, -1, 10000, 1, -10000,  // member 0
      0, 1000, 2, 0, -1, 10000, 1, -10000,  // member 1
  };
  Mask all(4);
  CHECK(select_committee(two_channels, 2, 4, 2, all.span(), 1) == std::vector<int>{1});
}

TEST_CASE("select_committee never picks an ineligible candidate", "[selection]") {
  const int members = 3, n = 25, channels = 4;
  const auto predictions = random_matrix(members * n, channels, 7, 5.0);
  Mask eligible(n);
  for (int i = 0; i < n; i += 2) eligible[i] = false;
  const auto got = select_committee(predictions, members, n, channels, eligible.span(), 20);
  CHECK(got.size() == 12);
  CHECK(all_distinct(got));
  for (int i : got) CHECK(i % 2 == 1);
}
