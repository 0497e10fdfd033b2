// Calibration of linear readouts on a base model's frozen features. The ridge form works in the
// dual (n x n Gram matrix, n images << p features); the factorized form alternates two small
// primal ridge regressions. Every parallel loop gives each output to one thread, which sums in a
// fixed order, so results are bit-identical whatever the thread count.

// Eigen's own threading would make results depend on the thread count (and fork teams for tiny
// products). Every file of a binary that includes Eigen must define this too, or the linker may
// keep another file's threaded instantiation of the same product templates.
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif

#include "server/sessions/calibration.h"

// GCC 12 flags Eigen 3.4's self-adjoint matrix-vector kernel (used by the eigensolver) with a
// false -Wmaybe-uninitialized; it is reported inside Eigen, so silencing it there is enough.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cmath>
#include <exception>
#include <new>
#include <numeric>

#include "common/truncate.h"
#include "server/sessions/spatial_prior.h"
#include "server/synthesis/rng.h"

namespace stimloop::sessions {
namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

// r values closer than this count as a tie, so rounding noise cannot pick a smaller penalty.
constexpr double kTieTolerance = 1e-12;
constexpr int kRidgeGridSize = 25;  // 1e-4 .. 1e4: three per decade
// Alternations per penalty after the first during cross-validation (warm-started).
constexpr int kWarmIterations = 2;
constexpr int kFactorizedGridSize = 9;  // 1e-4 .. 1e4 by decades: each one costs a full ALS run
constexpr std::int64_t kBlock = 256;    // features per task in the weight accumulation

// Small loops run on the calling thread: forking a team costs more than they do, and far more
// when the cores are shared.
bool parallel_worth(std::int64_t work) { return work >= (std::int64_t{1} << 18); }

// Four partial sums let the compiler keep several products in flight; the order is fixed.
template <typename T>
double dot(const float* a, const T* b, std::int64_t n) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; ++k) acc[k] += double{a[i + k]} * b[i + k];
  }
  for (; i < n; ++i) acc[0] += double{a[i]} * b[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

std::vector<double> log_grid(int count, double scale) {
  std::vector<double> grid(count);
  for (int l = 0; l < count; ++l) grid[l] = scale * std::pow(10.0, -4.0 + 8.0 * l / (count - 1));
  return grid;
}

// Fold of each of m images: a Fisher-Yates shuffle with the project's generator dealt round-robin
// into k folds, or one image per fold (leave-one-out) when there are fewer images than folds.
std::vector<int> assign_folds(int m, int folds, std::uint64_t seed) {
  std::vector<int> fold(m);
  std::iota(fold.begin(), fold.end(), 0);
  if (m < folds) return fold;
  std::vector<int> order = fold;
  synthesis::Rng rng(seed);
  for (int i = m - 1; i > 0; --i) std::swap(order[i], order[rng.uniform_int(0, i)]);
  for (int i = 0; i < m; ++i) fold[order[i]] = i % folds;
  return fold;
}

// Double centring of a Gram matrix: the inner products of the rows minus their mean.
Mat center_gram(const Mat& k) {
  const Vec r = k.rowwise().mean();
  Mat kc = k;
  kc.colwise() -= r;
  kc.rowwise() -= r.transpose();
  kc.array() += r.mean();
  return kc;
}

// The penalty the tie rule favours: the largest whose r is within kTieTolerance of the best.
int pick_lambda(const std::vector<double>& r) {
  const double best = *std::max_element(r.begin(), r.end());
  int l = static_cast<int>(r.size()) - 1;
  while (r[l] < best - kTieTolerance) --l;
  return l;
}

struct Linear {
  Vec coef;
  double intercept = 0.0;
};

// Ridge with an unpenalised intercept; the penalty is `relative` times the mean squared centred
// row of the design, so it means the same whatever the scale of the design (the a/mask split).
// Solved in whichever of the primal (d x d) and dual (t x t) systems is smaller.
Linear ridge(const Mat& design, const Vec& y, double relative) {
  const Eigen::RowVectorXd mean = design.colwise().mean();
  const Mat dc = design.rowwise() - mean;
  const double ym = y.mean();
  const Vec yc = y.array() - ym;
  const double scale = dc.squaredNorm() / static_cast<double>(design.rows());
  Linear out{Vec::Zero(design.cols()), ym};
  if (!(scale > 0.0)) return out;
  const double lambda = relative * scale;
  if (design.cols() <= design.rows()) {
    Mat g = dc.transpose() * dc;
    g.diagonal().array() += lambda;
    out.coef = g.ldlt().solve(dc.transpose() * yc);
  } else {
    Mat g = dc * dc.transpose();
    g.diagonal().array() += lambda;
    out.coef = dc.transpose() * g.ldlt().solve(yc);
  }
  out.intercept = ym - mean.dot(out.coef);
  return out;
}

}  // namespace

struct FeatureBank::Impl {
  explicit Impl(SpatialPrior p) : prior(std::move(p)) {}
  SpatialPrior prior;
  // One vector per image so that the spans row() hands out stay valid as images arrive.
  std::vector<std::vector<float>> rows;
  std::vector<std::vector<double>> gram;  // gram[i][j] for j <= i

  double at(int i, int j) const { return i >= j ? gram[i][j] : gram[j][i]; }
  const float* x(int i) const { return rows[i].data(); }
  std::int64_t work(const std::vector<int>& images) const {
    return rows.empty() ? 0 : std::int64_t(images.size()) * std::int64_t(rows[0].size());
  }

  // z_i = sum_s mask[s] x_i[s, :] for each image of `images`.
  Mat pool_positions(const std::vector<int>& images, const Vec& mask, int c) const {
    Mat zt = Mat::Zero(c, static_cast<Eigen::Index>(images.size()));  // z_i contiguous
#pragma omp parallel for schedule(static) if (parallel_worth(work(images)))
    for (int i = 0; i < static_cast<int>(images.size()); ++i) {
      const float* xi = x(images[i]);
      double* zi = zt.col(i).data();
      for (int s = 0; s < mask.size(); ++s) {
        const double ms = mask[s];
        for (int k = 0; k < c; ++k) zi[k] += ms * xi[std::int64_t{s} * c + k];
      }
    }
    return zt.transpose();
  }

  // u_i[s] = dot(a, x_i[s, :]) for each image of `images`.
  Mat project_features(const std::vector<int>& images, const Vec& a, int positions) const {
    const int c = static_cast<int>(a.size());
    Mat u(static_cast<Eigen::Index>(images.size()), positions);
#pragma omp parallel for schedule(static) if (parallel_worth(work(images)))
    for (int i = 0; i < static_cast<int>(images.size()); ++i) {
      const float* xi = x(images[i]);
      for (int s = 0; s < positions; ++s) u(i, s) = dot(xi + std::int64_t{s} * c, a.data(), c);
    }
    return u;
  }

  // The factorized readout's starting mask: the spatial energy of sum_i yc_i x_i, the feature-
  // response covariance (ridge's large-penalty limit). It points at the receptive field without
  // fitting p parameters, where a uniform mask would bury a small field under the whole map.
  Vec covariance_mask(const std::vector<int>& images, const Vec& y, int positions, int c) const {
    const Vec yc = y.array() - y.mean();
    Mat cov = Mat::Zero(c, positions);
#pragma omp parallel for schedule(static) if (parallel_worth(work(images)))
    for (int s = 0; s < positions; ++s) {
      for (std::size_t i = 0; i < images.size(); ++i) {
        const float* xs = x(images[i]) + std::int64_t{s} * c;
        double* out = cov.col(s).data();
        for (int k = 0; k < c; ++k) out[k] += yc[i] * xs[k];
      }
    }
    Vec mask = cov.colwise().norm().transpose();
    const double norm = mask.norm();
    if (!(norm > 0.0)) return Vec::Constant(positions, 1.0 / std::sqrt(double(positions)));
    return mask / norm;
  }

  struct Factors {
    Vec a, mask;
    double bias = 0.0;
  };

  // Alternating ridge from `mask`. After each mask step the mask is scaled to unit norm (a takes
  // the scale) and its largest entry made positive (a takes the sign): one answer per model.
  Factors alternate(const std::vector<int>& images, const Vec& y, Vec mask, double relative,
                    int iterations, int c) const {
    Factors f{Vec::Zero(c), std::move(mask), y.mean()};
    for (int it = 0; it < iterations; ++it) {
      const Linear feat = ridge(pool_positions(images, f.mask, c), y, relative);
      const Linear spatial =
          ridge(project_features(images, feat.coef, static_cast<int>(f.mask.size())), y, relative);
      const double norm = spatial.coef.norm();
      if (!(norm > 0.0)) {  // the mask step found nothing: keep this mask's feature fit
        f.a = feat.coef;
        f.bias = feat.intercept;
        break;
      }
      f.mask = spatial.coef / norm;
      f.a = feat.coef * norm;
      f.bias = spatial.intercept;
    }
    Eigen::Index top = 0;
    f.mask.cwiseAbs().maxCoeff(&top);
    if (f.mask[top] < 0.0) {
      f.mask = -f.mask;
      f.a = -f.a;
    }
    return f;
  }
};

FeatureBank::FeatureBank(FeatureShape shape, double smoothing)
    : shape_(shape), impl_(std::make_unique<Impl>(SpatialPrior(shape, smoothing))) {}
FeatureBank::~FeatureBank() = default;

int FeatureBank::images() const { return static_cast<int>(impl_->rows.size()); }

std::span<const float> FeatureBank::row(int index) const {
  if (index < 0 || index >= images()) return {};
  return impl_->rows[index];
}

double FeatureBank::gram(int i, int j) const {
  if (i < 0 || j < 0 || i >= images() || j >= images()) return 0.0;
  return impl_->at(i, j);
}

StatusOr<int> FeatureBank::add(std::span<const float> features) {
  if (shape_.h <= 0 || shape_.w <= 0 || shape_.c <= 0) {
    return invalid_argument("shape: h, w and c must be positive");
  }
  const std::int64_t p = shape_.size();
  if (static_cast<std::int64_t>(features.size()) != p) {
    return invalid_argument("features: expected " + std::to_string(p) + " values (h*w*c), got " +
                            std::to_string(features.size()));
  }
  for (std::int64_t j = 0; j < p; ++j) {
    if (!std::isfinite(features[j])) {
      return invalid_argument("features: value " + std::to_string(j) + " is not finite");
    }
  }
  try {
    const int n = images();
    std::vector<float> row(features.begin(), features.end());
    std::vector<double> g(n + 1);
    if (impl_->prior.identity()) {
#pragma omp parallel for schedule(static) if (parallel_worth(n * p))
      for (int j = 0; j < n; ++j) g[j] = dot(impl_->x(j), row.data(), p);
      g[n] = dot(row.data(), row.data(), p);
    } else {
      std::vector<double> smoothed(row.begin(), row.end());
      impl_->prior.apply(smoothed);
#pragma omp parallel for schedule(static) if (parallel_worth(n * p))
      for (int j = 0; j < n; ++j) g[j] = dot(impl_->x(j), smoothed.data(), p);
      g[n] = dot(row.data(), smoothed.data(), p);
    }
    impl_->rows.reserve(n + 1);  // both first, so that a failure leaves the bank consistent
    impl_->gram.reserve(n + 1);
    impl_->rows.push_back(std::move(row));
    impl_->gram.push_back(std::move(g));
    return n;
  } catch (const std::bad_alloc&) {
    return resource_exhausted("features: out of memory storing image " + std::to_string(images()));
  }
}

StatusOr<std::vector<ChannelFit>> FeatureBank::fit(std::span<const int> rows,
                                                   std::span<const double> targets, int channels,
                                                   const CalibrationOptions& options) const {
  using std::to_string;
  const int m = static_cast<int>(rows.size());
  if (channels < 1) {
    return invalid_argument("channels: must be at least 1, got " + to_string(channels));
  }
  if (options.folds < 2) {
    return invalid_argument("folds: must be at least 2, got " + to_string(options.folds));
  }
  if (options.form == ReadoutForm::kFactorized && options.als_iterations < 1) {
    return invalid_argument("als_iterations: must be at least 1, got " +
                            to_string(options.als_iterations));
  }
  for (double l : options.lambdas) {
    if (!(std::isfinite(l) && l > 0.0)) {
      return invalid_argument("lambdas: " + to_string(l) + " is not finite and positive");
    }
  }
  if (m < 3) return invalid_argument("rows: at least 3 images are needed, got " + to_string(m));
  std::vector<char> seen(images(), 0);
  for (int r : rows) {
    if (r < 0 || r >= images()) {
      return invalid_argument("rows: index " + to_string(r) + " is out of range [0, " +
                              to_string(images()) + ")");
    }
    if (seen[r]++) return invalid_argument("rows: index " + to_string(r) + " appears twice");
  }
  if (targets.size() != rows.size() * channels) {
    return invalid_argument("targets: expected rows x channels = " + to_string(m * channels) +
                            " values, got " + to_string(targets.size()));
  }
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (!std::isfinite(targets[i])) {
      return invalid_argument("targets: value " + to_string(i) + " (image " +
                              to_string(i / channels) + ") is not finite");
    }
  }
  try {
    const Impl& impl = *impl_;
    const int positions = shape_.h * shape_.w, c = shape_.c;
    const std::int64_t p = shape_.size();
    const bool ridge_form = options.form == ReadoutForm::kRidge;
    const std::vector<int> selected(rows.begin(), rows.end());
    Mat y(m, channels);
    for (int i = 0; i < m; ++i) {
      for (int ch = 0; ch < channels; ++ch) y(i, ch) = targets[std::size_t(i) * channels + ch];
    }
    Mat k(m, m);
    if (ridge_form) {
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < m; ++j) k(i, j) = impl.at(selected[i], selected[j]);
      }
    }

    std::vector<double> grid = options.lambdas;
    if (grid.empty() && ridge_form) {
      const double scale = center_gram(k).trace() / m;  // mean squared centred row
      grid = log_grid(kRidgeGridSize, scale > 0.0 && std::isfinite(scale) ? scale : 1.0);
    } else if (grid.empty()) {
      grid = log_grid(kFactorizedGridSize, 1.0);
    }
    std::sort(grid.begin(), grid.end());
    grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
    const int lambdas = static_cast<int>(grid.size());

    // Held-out predictions of every fold, pooled: one m x channels matrix per penalty.
    const std::vector<int> fold = assign_folds(m, options.folds, options.seed);
    const int folds = std::min(m, options.folds);
    std::vector<Mat> pooled(lambdas, Mat(m, channels));
    for (int f = 0; f < folds; ++f) {
      std::vector<int> train, test;  // positions in `selected`
      for (int i = 0; i < m; ++i) (fold[i] == f ? test : train).push_back(i);
      const int t = static_cast<int>(train.size()), v = static_cast<int>(test.size());
      Mat yt(t, channels);
      for (int i = 0; i < t; ++i) yt.row(i) = y.row(train[i]);
      if (ridge_form) {
        // Centred with the training rows' mean only: kc(v, i) = <x_v - mu, x_i - mu>.
        Mat ktt(t, t), kvt(v, t);
        for (int i = 0; i < t; ++i) {
          for (int j = 0; j < t; ++j) ktt(i, j) = k(train[i], train[j]);
          for (int j = 0; j < v; ++j) kvt(j, i) = k(test[j], train[i]);
        }
        const Vec r = ktt.rowwise().mean();
        const Mat kc = center_gram(ktt);
        Mat kcv = kvt;
        kcv.colwise() -= Vec(kvt.rowwise().mean());
        kcv.rowwise() -= r.transpose();
        kcv.array() += r.mean();
        // One eigendecomposition serves every penalty and channel.
        const Eigen::SelfAdjointEigenSolver<Mat> es(kc);
        const Vec d = es.eigenvalues().cwiseMax(0.0);
        const Mat a = kcv * es.eigenvectors();
        const Eigen::RowVectorXd ybar = yt.colwise().mean();
        const Mat b = es.eigenvectors().transpose() * (yt.rowwise() - ybar);
        for (int l = 0; l < lambdas; ++l) {
          Mat pred = a * ((d.array() + grid[l]).inverse().matrix().asDiagonal() * b);
          pred.rowwise() += ybar;
          for (int j = 0; j < v; ++j) pooled[l].row(test[j]) = pred.row(j);
        }
      } else {
        std::vector<int> train_rows(t), test_rows(v);
        for (int i = 0; i < t; ++i) train_rows[i] = selected[train[i]];
        for (int j = 0; j < v; ++j) test_rows[j] = selected[test[j]];
        for (int ch = 0; ch < channels; ++ch) {
          const Vec yc = yt.col(ch);
          // Warm start along the penalty grid: after the first penalty, each starts from the
          // previous one's mask and needs only a couple of alternations (the refits of an online
          // session would otherwise spend most of their time here). The final fit below runs
          // every alternation from the covariance mask.
          Vec start = impl.covariance_mask(train_rows, yc, positions, c);
          for (int l = 0; l < lambdas; ++l) {
            const int iterations =
                l == 0 ? options.als_iterations : std::min(options.als_iterations, kWarmIterations);
            const Impl::Factors fac = impl.alternate(train_rows, yc, start, grid[l], iterations, c);
            start = fac.mask;
            const Vec pred = impl.pool_positions(test_rows, fac.mask, c) * fac.a;
            for (int j = 0; j < v; ++j) pooled[l](test[j], ch) = pred[j] + fac.bias;
          }
        }
      }
    }

    std::vector<ChannelFit> fits(channels);
    for (int ch = 0; ch < channels; ++ch) {
      std::vector<double> r(lambdas);
      for (int l = 0; l < lambdas; ++l) {
        r[l] = pearson_r({pooled[l].col(ch).data(), std::size_t(m)},
                         {y.col(ch).data(), std::size_t(m)});
      }
      const int best = pick_lambda(r);
      fits[ch].form = options.form;
      fits[ch].lambda = grid[best];
      fits[ch].cv_r = r[best];
      fits[ch].images = m;
    }

    if (!ridge_form) {
      for (int ch = 0; ch < channels; ++ch) {
        const Vec yc = y.col(ch);
        const Impl::Factors fac =
            impl.alternate(selected, yc, impl.covariance_mask(selected, yc, positions, c),
                           fits[ch].lambda, options.als_iterations, c);
        fits[ch].feature_weights.assign(fac.a.data(), fac.a.data() + c);
        fits[ch].spatial_mask.assign(fac.mask.data(), fac.mask.data() + positions);
        fits[ch].bias = fac.bias;
      }
      return fits;
    }

    // Final ridge on all rows: alpha = (Kc + lambda I)^-1 yc, w = sum_i alpha_i (x_i - mean x).
    const Eigen::SelfAdjointEigenSolver<Mat> es(center_gram(k));
    const Vec d = es.eigenvalues().cwiseMax(0.0);
    const Eigen::RowVectorXd ybar = y.colwise().mean();
    const Mat b = es.eigenvectors().transpose() * (y.rowwise() - ybar);
    Mat alpha(m, channels);
    for (int ch = 0; ch < channels; ++ch) {
      alpha.col(ch) =
          es.eigenvectors() * (b.col(ch).array() / (d.array() + fits[ch].lambda)).matrix();
    }
    const Eigen::RowVectorXd alpha_sum = alpha.colwise().sum();
    std::vector<double> mean(p);
    for (auto& f : fits) f.weights.resize(p);
    // Blocks of features, each summed over the images in order by one thread.
    const std::int64_t blocks = (p + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (parallel_worth(m * p * channels))
    for (std::int64_t blk = 0; blk < blocks; ++blk) {
      const std::int64_t j0 = blk * kBlock, j1 = std::min(p, j0 + kBlock);
      for (int i = 0; i < m; ++i) {
        for (std::int64_t j = j0; j < j1; ++j) mean[j] += impl.x(selected[i])[j];
      }
      for (std::int64_t j = j0; j < j1; ++j) mean[j] /= m;
      for (int ch = 0; ch < channels; ++ch) {
        double acc[kBlock] = {};
        for (int i = 0; i < m; ++i) {
          const float* xi = impl.x(selected[i]);
          for (std::int64_t j = j0; j < j1; ++j) acc[j - j0] += alpha(i, ch) * xi[j];
        }
        for (std::int64_t j = j0; j < j1; ++j) {
          fits[ch].weights[j] = static_cast<float>(acc[j - j0] - alpha_sum[ch] * mean[j]);
        }
      }
    }
    // Under a smoothness prior the dual's weights are Sigma X' alpha (spatial_prior.h).
    if (!impl.prior.identity()) {
      std::vector<double> w(p);
      for (auto& f : fits) {
        std::copy(f.weights.begin(), f.weights.end(), w.begin());
        impl.prior.apply(w);
        std::copy(w.begin(), w.end(), f.weights.begin());
      }
    }
    // The bias from the stored (float) weights, so predict() is centred on the targets' mean.
    for (int ch = 0; ch < channels; ++ch) {
      double mw = 0.0;
      for (std::int64_t j = 0; j < p; ++j) mw += mean[j] * fits[ch].weights[j];
      fits[ch].bias = ybar[ch] - mw;
    }
    return fits;
  } catch (const std::bad_alloc&) {
    return resource_exhausted("calibration: out of memory fitting " + to_string(m) + " images");
  } catch (const std::exception& e) {
    return internal_error(std::string("calibration: ") + e.what());
  }
}

const char* to_string(ReadoutForm form) {
  switch (form) {
    case ReadoutForm::kRidge:
      return "ridge";
    case ReadoutForm::kFactorized:
      return "factorized";
  }
  return "unknown";
}

StatusOr<ReadoutForm> parse_readout_form(const std::string& name) {
  if (name == "ridge") return ReadoutForm::kRidge;
  if (name == "factorized") return ReadoutForm::kFactorized;
  return invalid_argument("readout form: unknown '" + truncated_id(name, 100) +
                          "' (expected ridge or factorized)");
}

// NaN when the fit does not match `shape` or `features`: there is no status to return here.
double predict(const ChannelFit& fit, const FeatureShape& shape, std::span<const float> features) {
  const std::int64_t p = shape.size(), positions = std::int64_t{shape.h} * shape.w;
  if (static_cast<std::int64_t>(features.size()) != p) return std::nan("");
  double sum = 0.0;
  if (fit.form == ReadoutForm::kRidge) {
    if (static_cast<std::int64_t>(fit.weights.size()) != p) return std::nan("");
    for (std::int64_t j = 0; j < p; ++j) sum += double{fit.weights[j]} * features[j];
    return sum + fit.bias;
  }
  if (static_cast<std::int64_t>(fit.spatial_mask.size()) != positions ||
      static_cast<int>(fit.feature_weights.size()) != shape.c) {
    return std::nan("");
  }
  for (std::int64_t s = 0; s < positions; ++s) {
    double inner = 0.0;
    for (int k = 0; k < shape.c; ++k) {
      inner += double{fit.feature_weights[k]} * features[s * shape.c + k];
    }
    sum += fit.spatial_mask[s] * inner;
  }
  return sum + fit.bias;
}

double pearson_r(std::span<const double> a, std::span<const double> b) {
  const std::size_t n = a.size();
  if (n < 2 || b.size() != n) return 0.0;
  // Exactly constant sides are tested directly: their centred sums can round to a tiny nonzero.
  if (std::all_of(a.begin(), a.end(), [&](double v) { return v == a[0]; }) ||
      std::all_of(b.begin(), b.end(), [&](double v) { return v == b[0]; })) {
    return 0.0;
  }
  const double ma = std::accumulate(a.begin(), a.end(), 0.0) / n;
  const double mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  if (!(saa > 0.0) || !(sbb > 0.0)) return 0.0;
  return std::clamp(sab / std::sqrt(saa * sbb), -1.0, 1.0);
}

}  // namespace stimloop::sessions
