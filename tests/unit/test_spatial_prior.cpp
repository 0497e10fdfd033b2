// The ridge readout's spatial smoothness prior: Sigma = S S against a dense reference, symmetric
// and positive semi-definite; ridge under it equals primal ridge on blurred features; and on a
// readout whose spatial mask is a smooth blob it predicts held-out images better than plain
// ridge from few images.
#include <Eigen/Dense>
#include <catch2/catch.hpp>
#include <cmath>

#include "server/sessions/calibration.h"
#include "server/sessions/spatial_prior.h"
#include "server/synthesis/image_ops.h"
#include "server/synthesis/rng.h"

namespace stimloop::sessions {
namespace {

constexpr FeatureShape kShape{7, 5, 3};  // p = 105

std::vector<double> gaussians(std::uint64_t seed, std::size_t n) {
  synthesis::Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) {
    const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
    x = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  return v;
}

// S as a dense p x p matrix: S[(y,x,k), (y',x',k)] = t(y' - y) t(x' - x), zero outside the map.
Eigen::MatrixXd dense_blur(const FeatureShape& shape, double sigma) {
  const auto taps = synthesis::gaussian_kernel(sigma);
  const int r = static_cast<int>(taps.size() / 2);
  const auto at = [&](int d) { return std::abs(d) <= r ? taps[d + r] : 0.0; };
  const std::int64_t p = shape.size();
  Eigen::MatrixXd s = Eigen::MatrixXd::Zero(p, p);
  for (int y = 0; y < shape.h; ++y) {
    for (int x = 0; x < shape.w; ++x) {
      for (int y2 = 0; y2 < shape.h; ++y2) {
        for (int x2 = 0; x2 < shape.w; ++x2) {
          for (int k = 0; k < shape.c; ++k) {
            s((y * shape.w + x) * shape.c + k, (y2 * shape.w + x2) * shape.c + k) =
                at(y2 - y) * at(x2 - x);
          }
        }
      }
    }
  }
  return s;
}

TEST_CASE("SpatialPrior applies S S with zero borders, symmetric and PSD", "[calibration]") {
  for (double sigma : {0.5, 1.0, 2.5}) {
    INFO("sigma " << sigma);
    const SpatialPrior prior(kShape, sigma);
    const Eigen::MatrixXd s = dense_blur(kShape, sigma);
    const Eigen::MatrixXd sigma_matrix = s * s;
    CHECK((s - s.transpose()).cwiseAbs().maxCoeff() == 0.0);
    const auto a = gaussians(1, kShape.size()), b = gaussians(2, kShape.size());
    std::vector<double> pa = a, pb = b;
    prior.apply(pa);
    prior.apply(pb);
    const Eigen::VectorXd ref =
        sigma_matrix * Eigen::Map<const Eigen::VectorXd>(a.data(), a.size());
    double worst = 0.0;
    for (std::size_t j = 0; j < a.size(); ++j) worst = std::max(worst, std::abs(pa[j] - ref[j]));
    CHECK(worst < 1e-12 * (1.0 + ref.cwiseAbs().maxCoeff()));
    double apb = 0, bpa = 0, apa = 0;
    for (std::size_t j = 0; j < a.size(); ++j) {
      apb += a[j] * pb[j], bpa += b[j] * pa[j], apa += a[j] * pa[j];
    }
    CHECK(apb == Approx(bpa).epsilon(1e-12));
    CHECK(apa >= 0.0);
    CHECK(Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(sigma_matrix).eigenvalues().minCoeff() >
          -1e-12);
  }
  std::vector<double> x = gaussians(3, kShape.size()), same = x;
  SpatialPrior(kShape, 0.0).apply(same);
  CHECK(same == x);
}

std::vector<std::vector<float>> features(int n, std::uint64_t seed) {
  const auto g = gaussians(seed, std::size_t(n) * kShape.size());
  std::vector<std::vector<float>> x(n, std::vector<float>(kShape.size()));
  for (int i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < kShape.size(); ++j) x[i][j] = float(g[i * kShape.size() + j]);
  }
  return x;
}

TEST_CASE("Smoothed ridge equals primal ridge on blurred features", "[calibration]") {
  const double sigma = 1.2, lambda = 2.0;
  const int m = 40;
  const std::int64_t p = kShape.size();
  const auto x = features(m, 4);
  FeatureBank bank(kShape, sigma);
  for (const auto& row : x) REQUIRE(bank.add(row).ok());
  const auto y = gaussians(5, m);
  std::vector<int> rows(m);
  for (int i = 0; i < m; ++i) rows[i] = i;
  CalibrationOptions options;
  options.lambdas = {lambda};
  const auto fits = bank.fit(rows, y, 1, options);
  REQUIRE(fits.ok());

  // Primal: z_i = S x_i, w_z = (Zc' Zc + lambda I)^-1 Zc' yc; on raw features w = S w_z.
  const Eigen::MatrixXd s = dense_blur(kShape, sigma);
  Eigen::MatrixXd z(m, p);
  for (int i = 0; i < m; ++i) {
    Eigen::VectorXd xi(p);
    for (std::int64_t j = 0; j < p; ++j) xi[j] = x[i][j];
    z.row(i) = (s * xi).transpose();
  }
  const Eigen::MatrixXd zc = z.rowwise() - z.colwise().mean();
  Eigen::MatrixXd normal = zc.transpose() * zc;
  normal.diagonal().array() += lambda;
  const Eigen::VectorXd yv = Eigen::Map<const Eigen::VectorXd>(y.data(), m);
  const Eigen::VectorXd wz =
      normal.ldlt().solve(zc.transpose() * (yv.array() - yv.mean()).matrix());
  const Eigen::VectorXd w = s * wz;
  double worst = 0.0;
  for (std::int64_t j = 0; j < p; ++j)
    worst = std::max(worst, std::abs((*fits)[0].weights[j] - w[j]));
  CHECK(worst / w.cwiseAbs().maxCoeff() < 1e-5);
  // The Gram the dual uses is <x_i, S S x_j>.
  Eigen::VectorXd x0(p), x1(p);
  for (std::int64_t j = 0; j < p; ++j) x0[j] = x[0][j], x1[j] = x[1][j];
  CHECK(bank.gram(0, 1) == Approx(x0.dot(s * s * x1)).epsilon(1e-9));
}

TEST_CASE("A smoothness prior helps when the readout's mask is a smooth blob", "[calibration]") {
  constexpr FeatureShape shape{12, 12, 4};
  const std::int64_t p = shape.size();
  // Truth: feature weights x a Gaussian blob centred off-middle.
  std::vector<double> w(p);
  const double fw[4] = {1.0, -0.5, 0.8, 0.2};
  for (int y = 0; y < shape.h; ++y) {
    for (int x = 0; x < shape.w; ++x) {
      const double blob = std::exp(-((y - 4.0) * (y - 4.0) + (x - 7.0) * (x - 7.0)) / 8.0);
      for (int k = 0; k < shape.c; ++k) w[(y * shape.w + x) * shape.c + k] = blob * fw[k];
    }
  }
  const int n = 200, fitted = 60;
  const auto g = gaussians(6, std::size_t(n) * p);
  const auto noise = gaussians(7, n);
  std::vector<std::vector<float>> x(n, std::vector<float>(p));
  std::vector<double> y(n);
  for (int i = 0; i < n; ++i) {
    double v = 0.0;
    for (std::int64_t j = 0; j < p; ++j) {
      x[i][j] = float(g[i * p + j]);
      v += w[j] * x[i][j];
    }
    y[i] = v + 1.0 * noise[i];
  }
  std::vector<int> rows(fitted);
  for (int i = 0; i < fitted; ++i) rows[i] = i;
  const std::vector<double> targets(y.begin(), y.begin() + fitted);
  double r_plain = 0, r_smooth = 0;
  for (double sigma : {0.0, 1.5}) {
    FeatureBank bank(shape, sigma);
    for (const auto& row : x) REQUIRE(bank.add(row).ok());
    const auto fits = bank.fit(rows, targets, 1, CalibrationOptions{});
    REQUIRE(fits.ok());
    std::vector<double> pred, truth;
    for (int i = fitted; i < n; ++i) {
      pred.push_back(predict((*fits)[0], shape, x[i]));
      truth.push_back(y[i]);
    }
    (sigma == 0.0 ? r_plain : r_smooth) = pearson_r(pred, truth);
  }
  INFO("held-out r: plain " << r_plain << ", smoothed " << r_smooth);
  CHECK(r_smooth > r_plain + 0.1);
}

}  // namespace
}  // namespace stimloop::sessions
