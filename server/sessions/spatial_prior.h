// A smoothness prior for ridge readouts on a feature map (h x w x c, channels-last): weights are
// a priori correlated between nearby positions of the same feature, with covariance
// Sigma = S S, S a Gaussian blur along both spatial axes with zero borders. Zero borders make S
// symmetric (S_ij = k(i - j)), so Sigma = S S^T is positive semi-definite whatever the kernel's
// truncation. Ridge under this prior is ridge on the blurred features S x: in the dual it only
// changes the Gram matrix to x_i' Sigma x_j, and the weights on the raw features become
// Sigma X' alpha. The published readouts' spatial masks are smooth blobs; a plain ridge on all
// h*w*c features has no such preference and needs far more images to find one.
#pragma once

#include <span>
#include <vector>

#include "server/sessions/calibration.h"

namespace stimloop::sessions {

class SpatialPrior {
 public:
  // sigma in feature-map positions; 0: the identity (plain ridge).
  SpatialPrior(FeatureShape shape, double sigma);

  bool identity() const { return taps_.empty(); }
  // x <- Sigma x = S (S x), in place (x holds shape.size() values).
  void apply(std::span<double> x) const;

 private:
  void blur_once(std::span<double> x) const;

  FeatureShape shape_;
  std::vector<double> taps_;  // the 1-D kernel, centre at taps_.size() / 2
};

}  // namespace stimloop::sessions
