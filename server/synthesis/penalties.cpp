// The penalties of penalties.h with their analytic gradients (each image's own penalty, derived
// with respect to that image only).
//
// Which penalties a request has: tv_weight and l2_weight belong to the Adam method (a record
// keeps them only for it, so honouring them under another method would make `replay` differ);
// diversity_weight is recorded for every method and applies to any batch of two or more.
//
// Diversity: with u = x - mean(x) over all values of an image and v = u / |u| (0 for a flat
// image), penalty_i = w / (n-1) * sum_{j != i} v_i . v_j = w / (n-1) * v_i . (S - v_i) where
// S = sum_j v_j, and its gradient with respect to u_i is w / (n-1) * (T - c v_i) / |u_i| with
// T = S - v_i and c = v_i . T; minus its mean for the gradient with respect to x_i (u_i = x_i -
// mean(x_i)). O(n * size) time and one image of scratch, so a batch of 1024 costs no more than
// the images themselves.
#include "server/synthesis/penalties.h"

#include <cmath>
#include <vector>

namespace stimloop::synthesis {
namespace {

bool has_tv(const SynthesisRequest& r) { return r.method == MethodKind::kAdam && r.tv_weight > 0; }
bool has_l2(const SynthesisRequest& r) { return r.method == MethodKind::kAdam && r.l2_weight > 0; }
bool has_diversity(const SynthesisRequest& r, int n) { return r.diversity_weight > 0 && n >= 2; }

// Adds weight * TV(x) to *penalty and subtracts weight * dTV/dx from grad.
void total_variation(std::span<const double> x, const ImageShape& s, double weight, double* penalty,
                     std::span<double> grad) {
  const double scale = weight / double(x.size());
  double tv = 0.0;
  auto pair = [&](std::int64_t next, std::int64_t cur) {
    const double d = x[next] - x[cur];
    tv += std::abs(d);
    const double sign = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;
    grad[next] -= scale * sign;
    grad[cur] += scale * sign;
  };
  for (int y = 0; y < s.h; ++y) {
    for (int xx = 0; xx < s.w; ++xx) {
      for (int c = 0; c < s.c; ++c) {
        const std::int64_t at = (std::int64_t{y} * s.w + xx) * s.c + c;
        if (y + 1 < s.h) pair(at + std::int64_t{s.w} * s.c, at);
        if (xx + 1 < s.w) pair(at + s.c, at);
      }
    }
  }
  *penalty += scale * tv;
}

void l2(std::span<const double> x, double weight, double* penalty, std::span<double> grad) {
  const double scale = weight / double(x.size());
  double sum_sq = 0.0;
  for (std::size_t j = 0; j < x.size(); ++j) {
    sum_sq += x[j] * x[j];
    grad[j] -= 2.0 * scale * x[j];
  }
  *penalty += scale * sum_sq;
}

void diversity(const BatchState& state, double weight, std::span<double> values,
               std::span<double> gradient) {
  const int n = state.n;
  const std::int64_t size = state.shape.size();
  std::vector<double> mean(n), norm(n);
  for (int i = 0; i < n; ++i) {
    auto x = state.x.data() + i * size;
    double sum = 0.0;
    for (std::int64_t k = 0; k < size; ++k) sum += x[k];
    mean[i] = sum / double(size);
    double sum_sq = 0.0;
    for (std::int64_t k = 0; k < size; ++k) sum_sq += (x[k] - mean[i]) * (x[k] - mean[i]);
    norm[i] = std::sqrt(sum_sq);
  }
  std::vector<double> total(size, 0.0);  // S: the sum of the unit vectors
  for (int i = 0; i < n; ++i) {
    if (!(norm[i] > 0)) continue;
    auto x = state.x.data() + i * size;
    for (std::int64_t k = 0; k < size; ++k) total[k] += (x[k] - mean[i]) / norm[i];
  }
  const double scale = weight / double(n - 1);
  for (int i = 0; i < n; ++i) {
    if (!(norm[i] > 0)) continue;  // a flat image: every cosine with it is taken as 0
    auto x = state.x.data() + i * size;
    auto v = [&](std::int64_t k) { return (x[k] - mean[i]) / norm[i]; };
    double cos_sum = 0.0, sum_t = 0.0, sum_v = 0.0;
    for (std::int64_t k = 0; k < size; ++k) {
      const double vk = v(k), tk = total[k] - vk;
      cos_sum += vk * tk;
      sum_t += tk;
      sum_v += vk;
    }
    values[i] -= scale * cos_sum;
    const double grad_mean = (sum_t - cos_sum * sum_v) / (norm[i] * double(size));
    double* g = gradient.data() + i * size;
    for (std::int64_t k = 0; k < size; ++k) {
      const double vk = v(k), tk = total[k] - vk;
      g[k] -= scale * ((tk - cos_sum * vk) / norm[i] - grad_mean);
    }
  }
}

}  // namespace

bool has_penalties(const SynthesisRequest& request) {
  return has_tv(request) || has_l2(request) || has_diversity(request, request.count);
}

void apply_penalties(const SynthesisRequest& request, const BatchState& state,
                     std::span<double> values, std::span<double> gradient) {
  const std::int64_t size = state.shape.size();
  const bool tv = has_tv(request), l2_penalty = has_l2(request);
  if (tv || l2_penalty) {
    for (int i = 0; i < state.n; ++i) {
      std::span<const double> x(state.x.data() + i * size, std::size_t(size));
      auto grad = gradient.subspan(i * size, size);
      double penalty = 0.0;
      if (tv) total_variation(x, state.shape, request.tv_weight, &penalty, grad);
      if (l2_penalty) l2(x, request.l2_weight, &penalty, grad);
      values[i] -= penalty;
    }
  }
  if (has_diversity(request, state.n)) diversity(state, request.diversity_weight, values, gradient);
}

}  // namespace stimloop::synthesis
