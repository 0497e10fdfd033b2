// Choosing which images of a pool to show next, from predicted responses. Pure functions: the
// session's strategies (strategies.h) compute the predictions and call these.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace stimloop::sessions {

// `count` distinct indices of [0, pool_size) with eligible[i] true, drawn uniformly with the
// project's xoshiro256** generator (server/synthesis/rng.h) from `seed`: the same seed gives the
// same choice on every machine. Fewer when fewer are eligible.
std::vector<int> select_random(int pool_size, std::span<const bool> eligible, int count,
                               std::uint64_t seed);

// Adept (Cowley et al., NeurIPS 2017): greedily picks `count` eligible candidates, each time the
// one maximising the norm of its predicted population response plus its mean distance to the
// responses already chosen (the block so far and `already_shown`). predicted: pool_size x channels
// (row-major); already_shown: m x channels responses of images shown before (may be empty).
std::vector<int> select_adept(std::span<const float> predicted, int pool_size, int channels,
                              std::span<const bool> eligible, std::span<const float> already_shown,
                              int count);

// Query by committee: the `count` eligible candidates on which `members` predictors disagree
// most. predictions: members x pool_size x channels (row-major). Disagreement of a candidate: the
// mean over channels of the variance across members, each channel's variance divided by that
// channel's variance of the committee mean over the pool (so no channel dominates by its scale).
std::vector<int> select_committee(std::span<const float> predictions, int members, int pool_size,
                                  int channels, std::span<const bool> eligible, int count);

}  // namespace stimloop::sessions
