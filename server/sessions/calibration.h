// Online calibration: a linear readout per recorded channel, fitted on the frozen features of a
// base model (the activations entering a shared model's readout, h x w x c, channels-last) from
// the responses a rig reported. Two forms, as in the published shared models' repository:
// - kRidge: all h*w*c features, ridge regression solved in the dual (n images << features), the
//   penalty chosen by k-fold cross-validation;
// - kFactorized: feature weights (c) x spatial mask (h*w), the shared models' own readout form,
//   fitted by alternating ridge regressions.
// Pure linear algebra on the host (Eigen): no backend, no engine, no I/O.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace stimloop::sessions {

struct FeatureShape {
  int h = 0, w = 0, c = 0;
  std::int64_t size() const { return std::int64_t{h} * w * c; }
};

enum class ReadoutForm { kRidge, kFactorized };
const char* to_string(ReadoutForm form);
StatusOr<ReadoutForm> parse_readout_form(const std::string& name);  // "ridge" | "factorized"

struct CalibrationOptions {
  ReadoutForm form = ReadoutForm::kRidge;
  int folds = 5;                // k of the k-fold cross-validation (fewer images: leave-one-out)
  std::vector<double> lambdas;  // candidate penalties; empty: a log-spaced default grid
                                // (kFactorized: relative to each sub-problem's mean squared
                                // centred design row, as the a/mask scale split is arbitrary)
  int als_iterations = 8;       // kFactorized: alternations
  std::uint64_t seed = 0;       // fold assignment (deterministic for a given seed)
};

// One channel's fitted readout. prediction(x) = dot(weights, x) + bias for kRidge, and
// sum_s spatial_mask[s] * dot(feature_weights, x[s, :]) + bias for kFactorized (s = y * w + x).
struct ChannelFit {
  ReadoutForm form = ReadoutForm::kRidge;
  double lambda = 0.0;  // the chosen penalty
  double cv_r = 0.0;    // Pearson r of the held-out predictions of all folds against the targets
  int images = 0;       // images fitted
  std::vector<float> weights;          // kRidge: shape.size(), channels-last (y, x, c)
  std::vector<float> feature_weights;  // kFactorized: c
  std::vector<float> spatial_mask;     // kFactorized: h * w
  double bias = 0.0;
};

// The features of every image a session has shown, with their Gram matrix kept up to date as
// images arrive (so a refit after each report costs O(n^2) for the new rows, not O(n^2 p)).
class FeatureBank {
 public:
  // smoothing > 0: ridge fits use the spatial smoothness prior of that sigma (in feature-map
  // positions; spatial_prior.h): gram() is then <row(i), Sigma row(j)>.
  explicit FeatureBank(FeatureShape shape, double smoothing = 0.0);
  ~FeatureBank();
  FeatureBank(const FeatureBank&) = delete;
  FeatureBank& operator=(const FeatureBank&) = delete;

  const FeatureShape& shape() const { return shape_; }
  int images() const;
  // Appends one image's features (shape().size() finite floats); returns its row.
  StatusOr<int> add(std::span<const float> features);
  std::span<const float> row(int index) const;
  // <row(i), Sigma row(j)> as kept by add() (Sigma = I without smoothing; 0 for an index out of
  // range).
  double gram(int i, int j) const;

  // Fits one readout per channel on the images `rows` (distinct, at least 3) with targets
  // `targets` (rows.size() x channels, row-major, finite). INVALID_ARGUMENT naming the problem.
  StatusOr<std::vector<ChannelFit>> fit(std::span<const int> rows, std::span<const double> targets,
                                        int channels, const CalibrationOptions& options) const;

 private:
  struct Impl;
  FeatureShape shape_;
  std::unique_ptr<Impl> impl_;
};

// The readout applied to one image's features (the reference the resident model must match).
double predict(const ChannelFit& fit, const FeatureShape& shape, std::span<const float> features);

// How much two fits of a channel agree: the Pearson r of their predictions on the bank's last
// `recent` images (the stimuli a session showed most recently, synthesized ones included), so a
// refit that leaves what the channel prefers in place scores near 1 even when weights along
// directions the images never explore have moved. Scale and offset do not count (a synthesis
// maximising either fit goes the same way). 1 when the bank has fewer than 3 images.
double fit_agreement(const ChannelFit& a, const ChannelFit& b, const FeatureBank& bank,
                     int recent = 256);

// Pearson correlation; 0 when either side is constant.
double pearson_r(std::span<const double> a, std::span<const double> b);

}  // namespace stimloop::sessions
