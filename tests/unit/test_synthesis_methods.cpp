// The Adam and PGD methods and the Adam penalties, on tiny images and without a network: the
// tests hand each method gradients they compute themselves (a quadratic objective, large random
// gradients) and check the promises of method_adam.cpp, method_pgd.cpp and penalties.h:
// penalty gradients against central differences, Adam's bias correction and convergence, jitter
// draws, RMS contrast, the PGD balls, and 8-bit outputs that stay inside them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "server/synthesis/method.h"
#include "server/synthesis/penalties.h"

namespace stimloop::synthesis {
namespace {

constexpr std::array<float, 3> kMeans = {116.222f, 109.270f, 100.381f};
const ImageShape kShape{9, 11, 3};

// A batch of n images whose raw values are uniform in [lo, hi]; x0 = x.
BatchState make_state(int n, std::uint64_t seed, double lo = 20.0, double hi = 235.0,
                      ImageShape shape = kShape) {
  BatchState s;
  s.shape = shape;
  s.n = n;
  s.means = kMeans;
  const std::int64_t size = shape.size();
  s.x.resize(std::size_t(n) * size);
  Rng values(seed * 7919 + 17);
  for (std::size_t j = 0; j < s.x.size(); ++j) {
    s.x[j] = lo + (hi - lo) * values.uniform() - kMeans[(j % size) % 3];
  }
  s.x0 = s.x;
  for (int i = 0; i < n; ++i) s.rngs.emplace_back(seed + std::uint64_t(i));
  return s;
}

double raw_at(const BatchState& s, int i, std::int64_t j) {
  return s.x[i * s.shape.size() + j] + kMeans[j % 3];
}

// penalty_i(x) as apply_penalties reports it (values start at 0), and its reported gradient.
double penalty_of(const SynthesisRequest& r, const BatchState& s, int i) {
  std::vector<double> values(s.n, 0.0), grad(s.x.size(), 0.0);
  apply_penalties(r, s, values, grad);
  return -values[i];
}

// Central differences of penalty_i with respect to x_i against -gradient_i.
void check_penalty_gradient(const SynthesisRequest& r, BatchState s, double h) {
  std::vector<double> values(s.n, 0.0), grad(s.x.size(), 0.0);
  apply_penalties(r, s, values, grad);
  const std::int64_t size = s.shape.size();
  double max_grad = 0.0;
  for (double g : grad) max_grad = std::max(max_grad, std::abs(g));
  REQUIRE(max_grad > 0);
  double worst = 0.0;
  for (int i = 0; i < s.n; ++i) {
    for (std::int64_t k = 0; k < size; ++k) {
      double& xk = s.x[i * size + k];
      const double saved = xk;
      xk = saved + h;
      const double plus = penalty_of(r, s, i);
      xk = saved - h;
      const double minus = penalty_of(r, s, i);
      xk = saved;
      const double fd = (plus - minus) / (2 * h);
      worst = std::max(worst, std::abs(fd - (-grad[i * size + k])));
    }
  }
  INFO("largest |gradient| " << max_grad << ", worst difference " << worst);
  CHECK(worst <= 1e-6 * max_grad);
}

SynthesisRequest adam_request() {
  SynthesisRequest r;
  r.method = MethodKind::kAdam;
  r.gradient_blur_sigma = 0.0;
  r.step_size = 2.0;
  return r;
}

SynthesisRequest pgd_request(Norm norm, double eps, double step) {
  SynthesisRequest r;
  r.objective = ObjectiveKind::kAdversarial;
  r.method = MethodKind::kPgd;
  r.norm = norm;
  r.epsilon = eps;
  r.step_size = step;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Penalties

TEST_CASE("penalties: TV gradient matches central differences away from kinks", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.tv_weight = 3.0;
  BatchState s = make_state(2, 11);
  // Every neighbouring pair differs by far more than the difference step: no |.| kink is crossed.
  const std::int64_t size = s.shape.size();
  double min_gap = 1e9;
  for (int i = 0; i < s.n; ++i) {
    for (std::int64_t k = 0; k < size; ++k) {
      const std::int64_t y = k / (s.shape.w * 3), xx = (k / 3) % s.shape.w;
      if (y + 1 < s.shape.h) {
        min_gap =
            std::min(min_gap, std::abs(s.x[i * size + k + s.shape.w * 3] - s.x[i * size + k]));
      }
      if (xx + 1 < s.shape.w) {
        min_gap = std::min(min_gap, std::abs(s.x[i * size + k + 3] - s.x[i * size + k]));
      }
    }
  }
  REQUIRE(min_gap > 1e-2);
  check_penalty_gradient(r, s, 1e-4);
}

TEST_CASE("penalties: TV value on a ramp, divided by the number of values", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.tv_weight = 2.0;
  BatchState s = make_state(1, 1, 20, 235, ImageShape{2, 3, 3});
  for (int y = 0; y < 2; ++y) {
    for (int xx = 0; xx < 3; ++xx) {
      for (int c = 0; c < 3; ++c) s.x[(y * 3 + xx) * 3 + c] = 10.0 * y + 1.0 * xx;
    }
  }
  // Vertical: 3 columns x 3 channels x 10; horizontal: 2 rows x 2 pairs x 3 channels x 1.
  CHECK(penalty_of(r, s, 0) == Approx(2.0 * (90.0 + 12.0) / 18.0).epsilon(1e-14));
}

TEST_CASE("penalties: L2 value and gradient", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.l2_weight = 0.5;
  BatchState s = make_state(2, 5);
  const std::int64_t size = s.shape.size();
  for (int i = 0; i < s.n; ++i) {
    double sum_sq = 0.0;
    for (std::int64_t k = 0; k < size; ++k) sum_sq += s.x[i * size + k] * s.x[i * size + k];
    CHECK(penalty_of(r, s, i) == Approx(0.5 * sum_sq / double(size)).epsilon(1e-12));
  }
  check_penalty_gradient(r, s, 1e-3);
}

TEST_CASE("penalties: diversity gradient (n = 3) matches central differences", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.diversity_weight = 4.0;
  r.count = 3;
  BatchState s = make_state(3, 21);
  // Image 2 is image 0 plus a little noise: one large cosine, the others near 0.
  const std::int64_t size = s.shape.size();
  for (std::int64_t k = 0; k < size; ++k) s.x[2 * size + k] = s.x[k] + 0.3 * s.x[size + k];
  REQUIRE(penalty_of(r, s, 2) > 1.0);  // 4 * mean(cos(2,0) ~ 0.96, cos(2,1) ~ 0.3)
  check_penalty_gradient(r, s, 1e-3);
}

TEST_CASE("penalties: diversity value is the mean cosine of the centred images", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.diversity_weight = 1.5;
  r.count = 3;
  BatchState s = make_state(3, 8);
  const std::int64_t size = s.shape.size();
  auto centred = [&](int i) {
    std::vector<double> u(s.x.begin() + i * size, s.x.begin() + (i + 1) * size);
    double mean = 0.0;
    for (double v : u) mean += v / double(size);
    for (double& v : u) v -= mean;
    return u;
  };
  auto cosine = [&](int a, int b) {
    const auto u = centred(a), v = centred(b);
    double uv = 0, uu = 0, vv = 0;
    for (std::int64_t k = 0; k < size; ++k) uv += u[k] * v[k], uu += u[k] * u[k], vv += v[k] * v[k];
    return uv / std::sqrt(uu * vv);
  };
  CHECK(penalty_of(r, s, 0) == Approx(1.5 * (cosine(0, 1) + cosine(0, 2)) / 2).margin(1e-12));
  CHECK(penalty_of(r, s, 1) == Approx(1.5 * (cosine(1, 0) + cosine(1, 2)) / 2).margin(1e-12));
}

TEST_CASE("penalties: which apply, accumulation, flat images", "[synthesis]") {
  SynthesisRequest r = adam_request();
  CHECK_FALSE(has_penalties(r));
  r.diversity_weight = 1.0;
  r.count = 1;
  CHECK_FALSE(has_penalties(r));  // diversity needs two images
  r.count = 2;
  CHECK(has_penalties(r));
  r.diversity_weight = 0.0;
  r.tv_weight = 1.0;
  CHECK(has_penalties(r));
  r.method = MethodKind::kCowley2026;  // TV and L2 are recorded for Adam only
  CHECK_FALSE(has_penalties(r));

  // A single image: no diversity term at all.
  SynthesisRequest d = adam_request();
  d.diversity_weight = 1.0;
  BatchState one = make_state(1, 3);
  std::vector<double> values{7.0}, grad(one.x.size(), 1.0);
  apply_penalties(d, one, values, grad);
  CHECK(values[0] == 7.0);
  CHECK(std::all_of(grad.begin(), grad.end(), [](double g) { return g == 1.0; }));

  // Penalties subtract from values and gradients that already hold the objective's.
  SynthesisRequest all = adam_request();
  all.tv_weight = 0.7;
  all.l2_weight = 0.2;
  all.diversity_weight = 0.9;
  BatchState s = make_state(2, 4);
  std::vector<double> v0(2, 0.0), g0(s.x.size(), 0.0);
  apply_penalties(all, s, v0, g0);
  std::vector<double> v1{3.0, -2.0}, g1(s.x.size());
  for (std::size_t j = 0; j < g1.size(); ++j) g1[j] = 0.01 * double(j);
  apply_penalties(all, s, v1, g1);
  CHECK(v1[0] == Approx(3.0 + v0[0]).epsilon(1e-14));
  CHECK(v1[1] == Approx(-2.0 + v0[1]).epsilon(1e-14));
  for (std::size_t j = 0; j < g1.size(); ++j)
    CHECK(g1[j] == Approx(0.01 * double(j) + g0[j]).margin(1e-12));

  // A flat image in a diverse batch: no NaN, no diversity term for it.
  const std::int64_t size = s.shape.size();
  std::fill(s.x.begin(), s.x.begin() + size, 5.0);
  SynthesisRequest div = adam_request();
  div.diversity_weight = 1.0;
  std::vector<double> v2(2, 0.0), g2(s.x.size(), 0.0);
  apply_penalties(div, s, v2, g2);
  CHECK(v2[0] == 0.0);
  CHECK(v2[1] == 0.0);
  CHECK(std::all_of(g2.begin(), g2.end(), [](double g) { return g == 0.0; }));
}

// ---------------------------------------------------------------------------------------------
// Adam

TEST_CASE("adam: climbs a concave quadratic to its maximum", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.step_size = 1.0;
  const int n = 2;
  BatchState s = make_state(n, 31, 20, 235);
  BatchState target = make_state(n, 32, 60, 195);
  auto method = make_adam(r, s.shape, n);
  REQUIRE(method->initial_image_is_candidate());
  auto distance = [&] {
    double worst = 0.0;
    for (std::size_t j = 0; j < s.x.size(); ++j)
      worst = std::max(worst, std::abs(s.x[j] - target.x[j]));
    return worst;
  };
  const double start = distance();
  REQUIRE(start > 50);
  std::vector<double> grad(s.x.size());
  for (int t = 0; t < 1500; ++t) {
    for (std::size_t j = 0; j < grad.size(); ++j) grad[j] = -2.0 * (s.x[j] - target.x[j]);
    method->update(t, s, grad);
  }
  INFO("largest |x - target| " << start << " -> " << distance());
  CHECK(distance() < 0.05);
}

TEST_CASE("adam: bias correction makes the first steps lr * sign(g)", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.step_size = 2.0;
  const int n = 3;
  BatchState s = make_state(n, 41, 100, 130);  // far from the borders: no clipping
  auto method = make_adam(r, s.shape, n);
  std::vector<double> grad(s.x.size());
  Rng rng(99);
  for (std::size_t j = 0; j < grad.size(); ++j) {
    const double magnitude = std::pow(10.0, -3.0 + 6.0 * rng.uniform());  // 1e-3 .. 1e3
    grad[j] = j % 7 == 3 ? 0.0 : rng.uniform() < 0.5 ? -magnitude : magnitude;
  }
  // A constant gradient keeps the bias-corrected step at lr * g / |g| on every step.
  for (int t = 0; t < 3; ++t) {
    const std::vector<double> before = s.x;
    method->update(t, s, grad);
    for (std::size_t j = 0; j < grad.size(); ++j) {
      const double sign = grad[j] > 0 ? 1.0 : grad[j] < 0 ? -1.0 : 0.0;
      REQUIRE(s.x[j] - before[j] == Approx(2.0 * sign).margin(1e-4));
    }
  }
}

TEST_CASE("adam: gradient blur spreads a one-pixel gradient", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.step_size = 1.0;
  BatchState plain = make_state(1, 51, 100, 130);
  BatchState blurred = plain;
  std::vector<double> grad(plain.x.size(), 0.0);
  const std::int64_t centre = (4 * 11 + 5) * 3 + 1, neighbour = centre + 3;
  grad[centre] = 10.0;
  make_adam(r, plain.shape, 1)->update(0, plain, grad);
  r.gradient_blur_sigma = 1.0;
  make_adam(r, blurred.shape, 1)->update(0, blurred, grad);
  CHECK(plain.x[centre] - plain.x0[centre] == Approx(1.0).margin(1e-6));
  CHECK(plain.x[neighbour] == plain.x0[neighbour]);
  CHECK(blurred.x[centre] - blurred.x0[centre] == Approx(1.0).margin(1e-6));
  CHECK(blurred.x[neighbour] - blurred.x0[neighbour] == Approx(1.0).margin(1e-6));
  CHECK(blurred.x[centre + 1] == blurred.x0[centre + 1]);  // other channels: blur is spatial only
}

TEST_CASE("adam: jitter draws dy then dx in range, reproducibly", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.jitter = 3;
  BatchState a = make_state(2, 61), b = make_state(2, 61);
  auto ma = make_adam(r, a.shape, 2), mb = make_adam(r, b.shape, 2);
  Rng reference(61 + 1);  // image 1's stream
  bool hit_low = false, hit_high = false;
  for (int t = 0; t < 300; ++t) {
    for (int i = 0; i < 2; ++i) {
      const auto [dy, dx] = ma->jitter(t, i, a);
      CHECK(std::pair{dy, dx} == mb->jitter(t, i, b));
      CHECK((dy >= -3 && dy <= 3 && dx >= -3 && dx <= 3));
      hit_low |= dy == -3 || dx == -3;
      hit_high |= dy == 3 || dx == 3;
      if (i == 1) {
        const int ry = reference.uniform_int(-3, 3);
        const int rx = reference.uniform_int(-3, 3);
        CHECK(std::pair{dy, dx} == std::pair{ry, rx});
      }
    }
  }
  CHECK(hit_low);
  CHECK(hit_high);

  // No jitter: no shift, and the image's stream is left untouched.
  r.jitter = 0;
  BatchState c = make_state(1, 70);
  auto mc = make_adam(r, c.shape, 1);
  CHECK(mc->jitter(0, 0, c) == std::pair{0, 0});
  Rng fresh(70);
  CHECK(c.rngs[0].next() == fresh.next());
}

TEST_CASE("adam: rms_contrast fixes each image's RMS contrast around its mean", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.rms_contrast = 20.0;
  const int n = 2;
  BatchState s = make_state(n, 81, 100, 160);
  auto method = make_adam(r, s.shape, n);
  const std::int64_t size = s.shape.size();
  auto stats = [&](int i) {
    double mean = 0.0;
    for (std::int64_t k = 0; k < size; ++k) mean += raw_at(s, i, k) / double(size);
    double sq = 0.0;
    for (std::int64_t k = 0; k < size; ++k) sq += std::pow(raw_at(s, i, k) - mean, 2);
    return std::pair{mean, std::sqrt(sq / double(size))};
  };
  const auto before0 = stats(0), before1 = stats(1);
  std::vector<double> grad(s.x.size(), 0.0);  // no step: only the renormalisation acts
  method->update(0, s, grad);
  CHECK(stats(0).first == Approx(before0.first).epsilon(1e-12));
  CHECK(stats(1).first == Approx(before1.first).epsilon(1e-12));
  CHECK(stats(0).second == Approx(20.0).epsilon(1e-12));
  CHECK(stats(1).second == Approx(20.0).epsilon(1e-12));
  for (std::size_t j = 0; j < s.x.size(); ++j) {  // nothing reached the clipping range
    const double raw = s.x[j] + kMeans[j % 3];
    REQUIRE((raw > 0 && raw < 255));
  }
  // And after real steps too.
  Rng rng(5);
  for (int t = 1; t < 5; ++t) {
    for (double& g : grad) g = rng.uniform() - 0.5;
    method->update(t, s, grad);
    CHECK(stats(0).second == Approx(20.0).epsilon(1e-12));
    CHECK(stats(1).second == Approx(20.0).epsilon(1e-12));
  }
}

TEST_CASE("adam: grayscale and clipping after the step", "[synthesis]") {
  SynthesisRequest r = adam_request();
  r.grayscale = true;
  r.step_size = 50.0;
  BatchState s = make_state(2, 91);
  auto method = make_adam(r, s.shape, 2);
  std::vector<double> grad(s.x.size());
  Rng rng(3);
  for (double& g : grad) g = rng.uniform() - 0.5;
  for (int t = 0; t < 10; ++t) method->update(t, s, grad);
  for (std::size_t p = 0; p < s.x.size(); p += 3) {
    CHECK(s.x[p] + kMeans[0] == Approx(s.x[p + 1] + kMeans[1]).margin(1e-9));
    CHECK(s.x[p] + kMeans[0] == Approx(s.x[p + 2] + kMeans[2]).margin(1e-9));
  }
  for (std::size_t j = 0; j < s.x.size(); ++j) {
    const double raw = s.x[j] + kMeans[j % 3];
    CHECK((raw >= -1e-9 && raw <= 255 + 1e-9));
  }
}

// ---------------------------------------------------------------------------------------------
// PGD

// Large random gradients whose signs change every step.
std::vector<double> wild_gradient(std::size_t size, Rng& rng) {
  std::vector<double> g(size);
  for (double& v : g) v = (rng.uniform() - 0.5) * 2e3;
  return g;
}

// Raw values in the valid range, some at the borders, so clipping and the ball interact.
BatchState pgd_state(int n, std::uint64_t seed) {
  BatchState s = make_state(n, seed, 0, 255);
  for (std::size_t j = 0; j < s.x.size(); j += 7) s.x[j] = (j % 2 ? 0.0 : 255.0) - kMeans[j % 3];
  for (std::size_t j = 3; j < s.x.size(); j += 11) s.x[j] = (j % 2 ? 1.0 : 254.0) - kMeans[j % 3];
  s.x0 = s.x;
  return s;
}

TEST_CASE("pgd: L-inf steps are step * sign(g) and stay in the ball", "[synthesis]") {
  const double eps = 4.0;
  auto method = make_pgd(pgd_request(Norm::kLinf, eps, 1.5));
  BatchState inner = make_state(2, 101, 100, 130);
  Rng rng(1);
  auto g = wild_gradient(inner.x.size(), rng);
  g[5] = 0.0;
  method->update(0, inner, g);
  for (std::size_t j = 0; j < g.size(); ++j) {
    const double sign = g[j] > 0 ? 1.0 : g[j] < 0 ? -1.0 : 0.0;
    CHECK(inner.x[j] - inner.x0[j] == Approx(1.5 * sign).margin(1e-12));
  }

  BatchState s = pgd_state(3, 102);
  for (int t = 0; t < 60; ++t) {
    method->update(t, s, wild_gradient(s.x.size(), rng));
    for (std::size_t j = 0; j < s.x.size(); ++j) {
      REQUIRE(std::abs(s.x[j] - s.x0[j]) <= eps + 1e-12);
      const double raw = s.x[j] + kMeans[j % 3];
      REQUIRE((raw >= -1e-12 && raw <= 255 + 1e-12));
    }
  }
  // A constant push reaches the boundary of the ball (or of the valid range).
  std::vector<double> up(s.x.size(), 1.0);
  for (int t = 0; t < 8; ++t) method->update(t, s, up);  // 8 * 1.5 > 2 * eps
  for (std::size_t j = 0; j < s.x.size(); ++j) {
    const double expected = std::min(s.x0[j] + eps, 255.0 - kMeans[j % 3]);
    CHECK(s.x[j] == Approx(expected).margin(1e-12));
  }
}

double l2_distance(const BatchState& s, int i) {
  const std::int64_t size = s.shape.size();
  double sq = 0.0;
  for (std::int64_t k = 0; k < size; ++k) sq += std::pow(s.x[i * size + k] - s.x0[i * size + k], 2);
  return std::sqrt(sq);
}

TEST_CASE("pgd: L2 steps have length `step` and stay in the ball", "[synthesis]") {
  const double eps = 10.0;
  auto method = make_pgd(pgd_request(Norm::kL2, eps, 3.0));
  BatchState inner = make_state(2, 111, 100, 130);
  Rng rng(2);
  const auto g = wild_gradient(inner.x.size(), rng);
  method->update(0, inner, g);
  const std::int64_t size = inner.shape.size();
  for (int i = 0; i < 2; ++i) {
    CHECK(l2_distance(inner, i) == Approx(3.0).epsilon(1e-12));
    // Along g: the step is a positive multiple of the gradient.
    double g_norm = 0.0;
    for (std::int64_t k = 0; k < size; ++k) g_norm += g[i * size + k] * g[i * size + k];
    g_norm = std::sqrt(g_norm);
    for (std::int64_t k = 0; k < size; ++k) {
      const std::int64_t j = i * size + k;
      REQUIRE(inner.x[j] - inner.x0[j] == Approx(3.0 * g[j] / g_norm).margin(1e-12));
    }
  }
  // A zero gradient: no step and no NaN.
  BatchState still = make_state(1, 112, 100, 130);
  method->update(0, still, std::vector<double>(still.x.size(), 0.0));
  CHECK(still.x == still.x0);

  BatchState s = pgd_state(3, 113);
  for (int t = 0; t < 60; ++t) {
    method->update(t, s, wild_gradient(s.x.size(), rng));
    for (int i = 0; i < s.n; ++i) REQUIRE(l2_distance(s, i) <= eps * (1 + 1e-12));
    for (std::size_t j = 0; j < s.x.size(); ++j) {
      const double raw = s.x[j] + kMeans[j % 3];
      REQUIRE((raw >= -1e-12 && raw <= 255 + 1e-12));
    }
  }
  // Persistent pushes reach the sphere (the valid range leaves room here: x0 is interior).
  BatchState far = make_state(1, 114, 60, 190);
  std::vector<double> up(far.x.size());
  for (std::size_t j = 0; j < up.size(); ++j) up[j] = j % 2 ? 1.0 : -0.5;
  for (int t = 0; t < 10; ++t) method->update(t, far, up);
  CHECK(l2_distance(far, 0) == Approx(eps).epsilon(1e-12));
}

TEST_CASE("pgd: grayscale stays in the ball around a gray original", "[synthesis]") {
  for (Norm norm : {Norm::kLinf, Norm::kL2}) {
    SynthesisRequest r = pgd_request(norm, 3.0, 1.0);
    r.grayscale = true;
    auto method = make_pgd(r);
    BatchState s = make_state(2, 121, 20, 235);
    for (int i = 0; i < s.n; ++i) to_grayscale(s.image(i), kMeans);  // as the driver does
    s.x0 = s.x;
    Rng rng(4);
    for (int t = 0; t < 20; ++t) method->update(t, s, wild_gradient(s.x.size(), rng));
    for (int i = 0; i < s.n; ++i) {
      if (norm == Norm::kL2) CHECK(l2_distance(s, i) <= 3.0 * (1 + 1e-12));
    }
    for (std::size_t j = 0; j < s.x.size(); ++j) {
      if (norm == Norm::kLinf) CHECK(std::abs(s.x[j] - s.x0[j]) <= 3.0 + 1e-9);
    }
    for (std::size_t p = 0; p < s.x.size(); p += 3) {
      CHECK(s.x[p] + kMeans[0] == Approx(s.x[p + 1] + kMeans[1]).margin(1e-9));
    }
  }
}

// Float images around x0 built to tempt rounding out of the ball: deltas of exactly +-eps, just
// past it, on the .5 rounding boundaries, and values past the valid range.
std::vector<double> tempting_image(const BatchState& s, int i, double eps, Rng& rng) {
  const std::int64_t size = s.shape.size();
  std::vector<double> image(size);
  const double f = std::floor(eps);
  const double deltas[] = {eps, -eps, f + 0.5, -(f + 0.5), eps + 1e-9, -eps - 1e-9,
                           0.5, -0.5, 1.5,     -1.5,       eps - 0.5,  -(eps - 0.5),
                           0.0, 1e-9, eps + 3, -eps - 3};
  for (std::int64_t k = 0; k < size; ++k) {
    const double d = deltas[rng.next() % (sizeof(deltas) / sizeof(deltas[0]))];
    image[k] = s.x0[i * size + k] + d;
  }
  return image;
}

TEST_CASE("pgd: L-inf 8-bit images stay within eps of the 8-bit original", "[synthesis]") {
  for (double eps : {2.5, 4.0, 0.7, 1.0}) {
    auto method = make_pgd(pgd_request(Norm::kLinf, eps, 1.0));
    BatchState s = make_state(2, 131, 0, 255);
    // Integer originals (as decoded images give), some at 0 and 255.
    for (std::size_t j = 0; j < s.x.size(); ++j) {
      const double raw = j % 13 == 0   ? 0.0
                         : j % 17 == 0 ? 255.0
                                       : std::round(s.x[j] + kMeans[j % 3]);
      s.x[j] = raw - kMeans[j % 3];
    }
    s.x0 = s.x;
    Rng rng(7);
    for (int i = 0; i < s.n; ++i) {
      const auto original = quantize(s.image0(i), kMeans);
      for (int trial = 0; trial < 5; ++trial) {
        const auto image = tempting_image(s, i, eps, rng);
        const auto q = method->to_rgb8(s, i, image);
        REQUIRE(q.size() == original.size());
        for (std::size_t k = 0; k < q.size(); ++k) {
          INFO("eps " << eps << " original " << int(original[k]) << " float "
                      << image[k] + kMeans[k % 3] << " -> " << int(q[k]));
          REQUIRE(std::abs(int(q[k]) - int(original[k])) <= eps);
          // Well inside the ball, nearest rounding is kept.
          const double raw = image[k] + kMeans[k % 3];
          if (std::abs(raw - original[k]) <= std::floor(eps) - 0.5 && raw >= 0 && raw <= 255) {
            REQUIRE(int(q[k]) == int(std::nearbyint(raw)));
          }
        }
      }
    }
  }
}

TEST_CASE("pgd: L-inf 8-bit stays within eps of quantize(x0) for non-integer x0", "[synthesis]") {
  auto method = make_pgd(pgd_request(Norm::kLinf, 2.5, 1.0));
  BatchState s = make_state(1, 141, 0, 255);  // raw values with fractions
  Rng rng(8);
  const auto original = quantize(s.image0(0), kMeans);
  for (int trial = 0; trial < 5; ++trial) {
    const auto q = method->to_rgb8(s, 0, tempting_image(s, 0, 2.5, rng));
    for (std::size_t k = 0; k < q.size(); ++k) {
      REQUIRE(std::abs(int(q[k]) - int(original[k])) <= 2);
    }
  }
}

double l2_distance_8bit(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  double sq = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) sq += std::pow(double(a[k]) - double(b[k]), 2);
  return std::sqrt(sq);
}

TEST_CASE("pgd: L2 8-bit images stay within eps of the 8-bit original", "[synthesis]") {
  const std::int64_t size = kShape.size();
  for (double eps : {2.5, 5.0, 8.62, 30.0}) {
    auto method = make_pgd(pgd_request(Norm::kL2, eps, 1.0));
    BatchState s = make_state(1, 151, 0, 255);
    for (std::size_t j = 0; j < s.x.size(); ++j) {
      s.x[j] = std::round(s.x[j] + kMeans[j % 3]) - kMeans[j % 3];
    }
    s.x0 = s.x;
    const auto original = quantize(s.image0(0), kMeans);
    Rng rng(9);
    auto on_sphere = [&](std::vector<double> delta) {  // x0 + delta scaled to norm exactly eps
      double sq = 0.0;
      for (double d : delta) sq += d * d;
      std::vector<double> image(size);
      for (std::int64_t k = 0; k < size; ++k) image[k] = s.x0[k] + delta[k] * eps / std::sqrt(sq);
      return image;
    };
    std::vector<std::vector<double>> images;
    // m components just past +-.5, m < 4 eps^2: inside the ball, but nearest rounding lands at
    // sqrt(m) > eps.
    const std::int64_t m = std::min<std::int64_t>(size, std::int64_t(4 * eps * eps) - 1);
    images.push_back(s.x0);
    for (std::int64_t k = 0; k < m; ++k) images.back()[k] += k % 2 ? 0.5 + 1e-9 : -0.5 - 1e-9;
    // Exactly on the sphere: a random direction, a few big components, and a one-hot.
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<double> delta(size);
      for (double& d : delta) d = rng.uniform() - 0.5;
      images.push_back(on_sphere(delta));
    }
    {
      std::vector<double> delta(size, 0.0);
      for (std::int64_t k = 0; k < size; k += 37) delta[k] = k % 2 ? 1.0 : -1.0;
      images.push_back(on_sphere(delta));
      std::vector<double> one(size, 0.0);
      one[size / 2] = 1.0;
      images.push_back(on_sphere(one));
    }
    // Outside the ball (update() never leaves it; to_rgb8 still must not).
    {
      std::vector<double> delta(size);
      for (double& d : delta) d = rng.uniform() - 0.5;
      auto image = on_sphere(delta);
      for (std::int64_t k = 0; k < size; ++k) image[k] = s.x0[k] + 1.7 * (image[k] - s.x0[k]);
      images.push_back(image);
    }
    // Well inside: nearest rounding is kept.
    std::vector<double> small(size);
    for (std::int64_t k = 0; k < size; ++k) {
      small[k] = s.x0[k] + (k == 4 ? 0.4 * eps : k % 10 == 0 ? 0.3 : 0.0);
    }
    images.push_back(small);

    for (const auto& image : images) {
      const auto q = method->to_rgb8(s, 0, image);
      INFO("eps " << eps);
      CHECK(l2_distance_8bit(q, original) <= eps * (1 + 1e-12));
    }
    const auto kept = method->to_rgb8(s, 0, small);
    CHECK(kept == quantize(small, kMeans));
  }
}

}  // namespace
}  // namespace stimloop::synthesis
