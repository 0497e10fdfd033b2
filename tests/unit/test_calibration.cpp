// Calibration (server/sessions/calibration.h) on small synthetic feature maps: the incremental
// Gram matrix against a direct product, the dual ridge against a primal solve in double, recovery
// of known readouts (ridge and factorized) with the penalty chosen by cross-validation, the
// penalty's response to noise, determinism across calls and thread counts, and input validation.
#include <catch2/catch.hpp>

// As in calibration.cpp: one (unthreaded) instantiation of Eigen's products per binary.
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "server/sessions/calibration.h"
#include "server/synthesis/rng.h"

namespace stimloop::sessions {
namespace {

using Catch::Matchers::Contains;

constexpr FeatureShape kShape{6, 6, 5};  // p = 180

double gaussian(synthesis::Rng& rng) {
  const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

std::vector<double> gaussians(synthesis::Rng& rng, std::size_t n) {
  std::vector<double> v(n);
  for (double& x : v) x = gaussian(rng);
  return v;
}

// n images of features with a low-rank structure (as a CNN's are): `rank` latent factors mixed
// into all p features, plus a little independent noise. rank 0: independent features.
std::vector<std::vector<float>> make_features(int n, int rank, std::uint64_t seed,
                                              FeatureShape shape = kShape) {
  synthesis::Rng rng(seed);
  const std::int64_t p = shape.size();
  const std::vector<double> mixing = gaussians(rng, std::size_t(rank) * p);
  std::vector<std::vector<float>> x(n, std::vector<float>(p));
  for (auto& row : x) {
    const std::vector<double> latent = gaussians(rng, rank);
    for (std::int64_t j = 0; j < p; ++j) {
      double v = (rank == 0 ? 1.0 : 0.1) * gaussian(rng) + 0.5;
      for (int r = 0; r < rank; ++r) v += latent[r] * mixing[r * p + j];
      row[j] = static_cast<float>(v);
    }
  }
  return x;
}

void fill(FeatureBank& bank, const std::vector<std::vector<float>>& x) {
  for (const auto& row : x) REQUIRE(bank.add(row).ok());
}

double linear(const std::vector<float>& x, const std::vector<double>& w, double b) {
  double s = b;
  for (std::size_t j = 0; j < x.size(); ++j) s += w[j] * x[j];
  return s;
}

double sd(const std::vector<double>& v) {
  const double m = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  double s = 0.0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / v.size());
}

// Targets y_i = x_i . w + b + noise * sd(signal) for the images 0 .. n-1.
std::vector<double> linear_targets(const std::vector<std::vector<float>>& x,
                                   const std::vector<double>& w, double noise, std::uint64_t seed) {
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = linear(x[i], w, 1.5);
  const double scale = noise * sd(y);
  synthesis::Rng rng(seed);
  for (double& v : y) v += scale * gaussian(rng);
  return y;
}

std::vector<int> first(int n) {
  std::vector<int> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

std::vector<double> held_out_predictions(const ChannelFit& fit,
                                         const std::vector<std::vector<float>>& x, int from) {
  std::vector<double> pred;
  for (std::size_t i = from; i < x.size(); ++i) pred.push_back(predict(fit, kShape, x[i]));
  return pred;
}

TEST_CASE("FeatureBank keeps the Gram matrix of its rows as images arrive", "[calibration]") {
  const auto x = make_features(30, 3, 1);
  FeatureBank bank(kShape);
  for (int i = 0; i < 30; ++i) {
    const auto row = bank.add(x[i]);
    REQUIRE(row.ok());
    CHECK(*row == i);
  }
  REQUIRE(bank.images() == 30);
  CHECK(std::equal(x[7].begin(), x[7].end(), bank.row(7).begin(), bank.row(7).end()));
  CHECK(bank.row(30).empty());
  double worst = 0.0;
  for (int i = 0; i < 30; ++i) {
    for (int j = 0; j < 30; ++j) {
      double direct = 0.0;
      for (std::size_t k = 0; k < x[i].size(); ++k) direct += double{x[i][k]} * x[j][k];
      worst = std::max(worst, std::abs(bank.gram(i, j) - direct) / std::abs(direct));
    }
  }
  CHECK(worst < 1e-12);
}

TEST_CASE("Ridge at a fixed penalty equals the primal solution in double", "[calibration]") {
  // p = 180 > 55 images: the dual's regime. Rows scrambled, some images left out of the fit.
  const auto x = make_features(70, 0, 2);
  FeatureBank bank(kShape);
  fill(bank, x);
  std::vector<int> rows;
  for (int i = 54; i >= 0; --i) rows.push_back((i * 7) % 55);
  const int m = static_cast<int>(rows.size()), channels = 2, p = 180;
  synthesis::Rng rng(3);
  const std::vector<double> targets = gaussians(rng, std::size_t(m) * channels);
  const double lambda = 3.0;
  CalibrationOptions options;
  options.lambdas = {lambda};
  const auto fits = bank.fit(rows, targets, channels, options);
  REQUIRE(fits.ok());
  REQUIRE(fits->size() == 2);

  Eigen::MatrixXd xs(m, p);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < p; ++j) xs(i, j) = x[rows[i]][j];
  }
  const Eigen::RowVectorXd mean = xs.colwise().mean();
  const Eigen::MatrixXd xc = xs.rowwise() - mean;
  Eigen::MatrixXd normal = xc.transpose() * xc;
  normal.diagonal().array() += lambda;
  for (int ch = 0; ch < channels; ++ch) {
    const ChannelFit& fit = (*fits)[ch];
    CHECK(fit.form == ReadoutForm::kRidge);
    CHECK(fit.lambda == lambda);
    CHECK(fit.images == m);
    Eigen::VectorXd y(m);
    for (int i = 0; i < m; ++i) y[i] = targets[std::size_t(i) * channels + ch];
    const Eigen::VectorXd w = normal.ldlt().solve(xc.transpose() * (y.array() - y.mean()).matrix());
    const double bias = y.mean() - mean.dot(w);
    REQUIRE(fit.weights.size() == std::size_t(p));
    double worst = 0.0;
    for (int j = 0; j < p; ++j) worst = std::max(worst, std::abs(fit.weights[j] - w[j]));
    CHECK(worst / w.cwiseAbs().maxCoeff() < 1e-6);
    const double scale = std::abs(bias) + mean.cwiseAbs().dot(w.cwiseAbs());
    CHECK(std::abs(fit.bias - bias) < 1e-6 * scale);
    for (int i = 55; i < 70; ++i) {
      const std::vector<double> wd(w.data(), w.data() + p);
      CHECK(std::abs(predict(fit, kShape, x[i]) - linear(x[i], wd, bias)) < 1e-6 * scale);
    }
  }
}

TEST_CASE("Cross-validated r equals leave-one-out refits in the primal", "[calibration]") {
  // Fewer images than folds: leave-one-out, so the folds are known. Each held-out prediction must
  // come from a ridge fitted (and centred) on the other images alone.
  const int m = 30, p = 180;
  const auto x = make_features(m, 3, 30);
  FeatureBank bank(kShape);
  fill(bank, x);
  synthesis::Rng rng(31);
  std::vector<double> y = gaussians(rng, m);
  for (int i = 0; i < m; ++i) y[i] += 5.0 + x[i][3];
  const double lambda = 20.0;
  CalibrationOptions options;
  options.folds = m + 1;
  options.lambdas = {lambda};
  const auto fits = bank.fit(first(m), y, 1, options);
  REQUIRE(fits.ok());

  std::vector<double> held_out(m);
  for (int out = 0; out < m; ++out) {
    Eigen::MatrixXd xs(m - 1, p);
    Eigen::VectorXd ys(m - 1);
    for (int i = 0, r = 0; i < m; ++i) {
      if (i == out) continue;
      for (int j = 0; j < p; ++j) xs(r, j) = x[i][j];
      ys[r++] = y[i];
    }
    const Eigen::RowVectorXd mean = xs.colwise().mean();
    const Eigen::MatrixXd xc = xs.rowwise() - mean;
    Eigen::MatrixXd normal = xc.transpose() * xc;
    normal.diagonal().array() += lambda;
    const Eigen::VectorXd w =
        normal.ldlt().solve(xc.transpose() * (ys.array() - ys.mean()).matrix());
    Eigen::RowVectorXd row(p);
    for (int j = 0; j < p; ++j) row[j] = x[out][j];
    held_out[out] = ys.mean() + (row - mean).dot(w);
  }
  CHECK((*fits)[0].cv_r == Approx(pearson_r(held_out, y)).epsilon(1e-9));
}

TEST_CASE("Ridge recovers a linear readout and finds none in noise", "[calibration]") {
  const auto x = make_features(200, 6, 4);
  FeatureBank bank(kShape);
  fill(bank, x);
  synthesis::Rng rng(5);
  const std::vector<double> w = gaussians(rng, 180);
  const std::vector<double> all = linear_targets(x, w, 0.1, 6);
  const std::vector<double> y(all.begin(), all.begin() + 150);
  // Channel 0: the readout; channel 1: noise alone (interleaved, row-major targets).
  const std::vector<double> noise = gaussians(rng, 150);
  std::vector<double> targets;
  for (int i = 0; i < 150; ++i) targets.insert(targets.end(), {y[i], noise[i]});
  const auto fits = bank.fit(first(150), targets, 2, {});
  REQUIRE(fits.ok());
  CHECK((*fits)[0].cv_r > 0.9);
  const std::vector<double> truth(all.begin() + 150, all.end());
  CHECK(pearson_r(held_out_predictions((*fits)[0], x, 150), truth) > 0.9);
  CHECK(std::abs((*fits)[1].cv_r) < 0.3);
}

TEST_CASE("Cross-validation picks larger penalties for noisier targets", "[calibration]") {
  // Independent features: the best penalty grows with the noise variance (for this design about
  // noise^2 times the grid's scale), so the CV's choice must rise across a 12-fold noise range.
  const int n = 200;
  const auto x = make_features(n, 0, 7);
  FeatureBank bank(kShape);
  fill(bank, x);
  synthesis::Rng rng(8);
  const std::vector<double> w = gaussians(rng, 180);
  // The default grid spans 1e-4 .. 1e4 times the mean squared centred row.
  double scale = 0.0;
  for (int j = 0; j < 180; ++j) {
    double m = 0.0, s = 0.0;
    for (const auto& row : x) m += row[j] / n;
    for (const auto& row : x) s += (row[j] - m) * (row[j] - m);
    scale += s / n;
  }
  std::vector<double> chosen;
  for (double noise : {0.1, 0.4, 1.2}) {
    const auto fits = bank.fit(first(n), linear_targets(x, w, noise, 9), 1, {});
    REQUIRE(fits.ok());
    chosen.push_back((*fits)[0].lambda);
  }
  CHECK(chosen[0] < chosen[1]);
  CHECK(chosen[1] <= chosen[2]);
  CHECK(chosen[0] < chosen[2]);
  // A well-posed problem's optimum is inside the grid, not at an edge.
  CHECK(chosen[1] > scale * 1e-4 * 1.01);
  CHECK(chosen[1] < scale * 1e4 * 0.99);
}

TEST_CASE("Factorized readout recovers a feature x mask model", "[calibration]") {
  const auto x = make_features(200, 0, 10);
  FeatureBank bank(kShape);
  fill(bank, x);
  synthesis::Rng rng(11);
  const std::vector<double> a = gaussians(rng, 5);
  std::vector<double> mask(36);
  for (int s = 0; s < 36; ++s) {
    const double dy = s / 6 - 2.0, dx = s % 6 - 3.0;
    mask[s] = std::exp(-(dx * dx + dy * dy) / 2.0);
  }
  std::vector<double> w(180);  // a (x) mask as one full readout
  for (int s = 0; s < 36; ++s) {
    for (int k = 0; k < 5; ++k) w[s * 5 + k] = mask[s] * a[k];
  }
  const std::vector<double> all = linear_targets(x, w, 0.2, 12);
  CalibrationOptions options;
  options.form = ReadoutForm::kFactorized;
  const auto fits =
      bank.fit(first(150), std::vector<double>(all.begin(), all.begin() + 150), 1, options);
  REQUIRE(fits.ok());
  const ChannelFit& fit = (*fits)[0];
  CHECK(fit.form == ReadoutForm::kFactorized);
  CHECK(fit.weights.empty());
  REQUIRE(fit.feature_weights.size() == 5);
  REQUIRE(fit.spatial_mask.size() == 36);
  CHECK(fit.cv_r > 0.8);
  const std::vector<double> truth(all.begin() + 150, all.end());
  CHECK(pearson_r(held_out_predictions(fit, x, 150), truth) > 0.9);
  const std::vector<double> got_mask(fit.spatial_mask.begin(), fit.spatial_mask.end());
  const std::vector<double> got_a(fit.feature_weights.begin(), fit.feature_weights.end());
  CHECK(std::abs(pearson_r(got_mask, mask)) > 0.9);
  CHECK(std::abs(pearson_r(got_a, a)) > 0.9);

  // predict() is exactly sum_s mask[s] * dot(a, x[s, :]) + bias.
  for (int i : {0, 160, 199}) {
    double direct = fit.bias;
    for (int s = 0; s < 36; ++s) {
      for (int k = 0; k < 5; ++k) {
        direct += double{fit.spatial_mask[s]} * fit.feature_weights[k] * x[i][s * 5 + k];
      }
    }
    CHECK(predict(fit, kShape, x[i]) == Approx(direct).epsilon(1e-12));
  }
}

TEST_CASE("Calibration is deterministic across calls and thread counts", "[calibration]") {
  // Large enough maps (28 x 28 x 8) that the loops over images and features run in parallel.
  const FeatureShape shape{28, 28, 8};
  const int n = 40;
  const auto x = make_features(n, 4, 13, shape);
  FeatureBank bank(shape);
  for (const auto& row : x) REQUIRE(bank.add(row).ok());
  synthesis::Rng rng(14);
  const std::vector<double> y = gaussians(rng, 2 * n);
  for (ReadoutForm form : {ReadoutForm::kRidge, ReadoutForm::kFactorized}) {
    CalibrationOptions options;
    options.form = form;
    options.seed = 21;
    if (form == ReadoutForm::kFactorized) {  // kept short: 3 penalties, 2 alternations
      options.lambdas = {0.1, 1.0, 10.0};
      options.als_iterations = 2;
    }
    const auto once = bank.fit(first(n), y, 2, options);
    const auto again = bank.fit(first(n), y, 2, options);
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(threads == 1 ? 2 : 1);
    const auto other_threads = bank.fit(first(n), y, 2, options);
    omp_set_num_threads(threads);
#else
    const auto other_threads = bank.fit(first(n), y, 2, options);
#endif
    options.seed = 22;
    const auto reseeded = bank.fit(first(n), y, 2, options);
    REQUIRE((once.ok() && again.ok() && other_threads.ok() && reseeded.ok()));
    for (const auto* other : {&again, &other_threads}) {
      for (int ch = 0; ch < 2; ++ch) {
        const ChannelFit &a = (*once)[ch], &b = (**other)[ch];
        CHECK(a.weights == b.weights);
        CHECK(a.feature_weights == b.feature_weights);
        CHECK(a.spatial_mask == b.spatial_mask);
        CHECK(a.bias == b.bias);
        CHECK(a.cv_r == b.cv_r);
        CHECK(a.lambda == b.lambda);
      }
    }
    CHECK((*reseeded)[0].cv_r != (*once)[0].cv_r);  // the seed deals the folds
  }
}

TEST_CASE("Leave-one-out when there are fewer images than folds", "[calibration]") {
  const auto x = make_features(4, 2, 16);
  FeatureBank bank(kShape);
  fill(bank, x);
  const std::vector<double> y = {1.0, -2.0, 0.5, 3.0};
  for (ReadoutForm form : {ReadoutForm::kRidge, ReadoutForm::kFactorized}) {
    CalibrationOptions options;
    options.form = form;
    const auto fits = bank.fit(first(4), y, 1, options);
    REQUIRE(fits.ok());
    CHECK((*fits)[0].images == 4);
    CHECK(std::isfinite((*fits)[0].cv_r));
    CHECK(std::isfinite(predict((*fits)[0], kShape, x[0])));
  }
}

TEST_CASE("Calibration rejects bad inputs naming the field", "[calibration]") {
  FeatureBank bank(kShape);
  fill(bank, make_features(10, 2, 17));
  auto invalid = [](const Status& status, const std::string& field) {
    CHECK(status.code() == StatusCode::kInvalidArgument);
    CHECK_THAT(status.message(), Contains(field));
  };
  std::vector<float> features(180, 1.0f);
  invalid(bank.add(std::vector<float>(179, 1.0f)).status(), "features");
  features[17] = NAN;
  invalid(bank.add(features).status(), "features");
  features[17] = INFINITY;
  invalid(bank.add(features).status(), "features");
  CHECK(bank.images() == 10);
  FeatureBank empty_shape(FeatureShape{0, 6, 5});
  invalid(empty_shape.add({}).status(), "shape");

  const std::vector<double> y(5, 1.0);
  const CalibrationOptions ok;
  CHECK(bank.fit(first(5), y, 1, ok).ok());
  invalid(bank.fit(first(2), std::vector<double>(2, 1.0), 1, ok).status(), "rows");
  invalid(bank.fit(std::vector<int>{0, 1, 2, 3, 10}, y, 1, ok).status(), "rows");
  invalid(bank.fit(std::vector<int>{0, 1, -1, 3, 4}, y, 1, ok).status(), "rows");
  invalid(bank.fit(std::vector<int>{0, 1, 2, 1, 4}, y, 1, ok).status(), "rows");
  invalid(bank.fit(first(5), std::vector<double>(4, 1.0), 1, ok).status(), "targets");
  invalid(bank.fit(first(5), y, 2, ok).status(), "targets");
  invalid(bank.fit(first(5), std::vector<double>{1.0, 2.0, NAN, 1.0, 0.0}, 1, ok).status(),
          "targets");
  invalid(bank.fit(first(5), std::vector<double>{}, 0, ok).status(), "channels");
  CalibrationOptions bad = ok;
  bad.folds = 1;
  invalid(bank.fit(first(5), y, 1, bad).status(), "folds");
  bad = ok;
  bad.lambdas = {1.0, -1.0};
  invalid(bank.fit(first(5), y, 1, bad).status(), "lambdas");
  bad = ok;
  bad.form = ReadoutForm::kFactorized;
  bad.als_iterations = 0;
  invalid(bank.fit(first(5), y, 1, bad).status(), "als_iterations");

  const auto parsed = parse_readout_form(std::string(500, 'x'));
  invalid(parsed.status(), std::string(100, 'x'));
  CHECK(parsed.status().message().size() < 200);
  for (ReadoutForm form : {ReadoutForm::kRidge, ReadoutForm::kFactorized}) {
    const auto round_trip = parse_readout_form(to_string(form));
    REQUIRE(round_trip.ok());
    CHECK(*round_trip == form);
  }
}

TEST_CASE("pearson_r handles perfect, constant and short inputs", "[calibration]") {
  const std::vector<double> a = {1.0, 2.0, 3.0, 5.0}, b = {2.0, 4.0, 6.0, 10.0};
  const std::vector<double> minus_b = {-2.0, -4.0, -6.0, -10.0}, flat(4, 0.1);
  CHECK(pearson_r(a, b) == Approx(1.0));
  CHECK(pearson_r(a, minus_b) == Approx(-1.0));
  CHECK(pearson_r(a, flat) == 0.0);
  CHECK(pearson_r(std::vector<double>{1.0}, std::vector<double>{2.0}) == 0.0);
}

TEST_CASE("fit_agreement correlates two fits' predictions on the bank's latest images",
          "[calibration]") {
  const auto x = make_features(40, 3, 9);
  FeatureBank bank(kShape);
  fill(bank, x);
  ChannelFit a;
  a.weights.resize(kShape.size());
  for (std::size_t j = 0; j < a.weights.size(); ++j) a.weights[j] = float(std::sin(j + 1.0));
  ChannelFit scaled = a, negated = a, other = a;
  for (auto& w : scaled.weights) w *= 3.0f;
  scaled.bias = 5.0;
  for (auto& w : negated.weights) w = -w;
  for (std::size_t j = 0; j < other.weights.size(); ++j)
    other.weights[j] = float(std::cos(3.0 * j));
  CHECK(fit_agreement(a, a, bank) == Approx(1.0).epsilon(1e-12));
  CHECK(fit_agreement(a, scaled, bank) == Approx(1.0).epsilon(1e-6));
  CHECK(fit_agreement(a, negated, bank) == Approx(-1.0).epsilon(1e-6));
  // A plain reference over the last 10 images only.
  std::vector<double> pa, po;
  for (int i = 30; i < 40; ++i) {
    pa.push_back(predict(a, kShape, x[i]));
    po.push_back(predict(other, kShape, x[i]));
  }
  CHECK(fit_agreement(a, other, bank, 10) == Approx(pearson_r(pa, po)).epsilon(1e-12));
  CHECK(fit_agreement(a, other, bank, 10) != Approx(fit_agreement(a, other, bank, 40)));
  // Too few images to say: they agree.
  FeatureBank small(kShape);
  REQUIRE(small.add(x[0]).ok());
  REQUIRE(small.add(x[1]).ok());
  CHECK(fit_agreement(a, negated, small) == 1.0);
}

}  // namespace
}  // namespace stimloop::sessions
