// Where a base model's frozen features end and its readout begins, and calibrated channels as
// models: the base's layers up to its last ReLU (the features every channel shares) followed by
// a fitted readout, as a Network any backend runs like a published model.
//
// The split rule covers both published families: a shared compact model's features are the
// 28x28xC map entering its 1x1 mixing conv and 28x28 spatial depthwise; a compact model's are the
// map entering its Dense layer.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "models/model.h"
#include "server/sessions/calibration.h"

namespace stimloop::sessions {

struct FeatureExtractor {
  // The base's layers up to and including its last ReLU layer: output = the features.
  std::shared_ptr<const Network> prefix;
  FeatureShape shape;  // of the prefix's output
};

// FAILED_PRECONDITION (naming the model) when the model has no ReLU layer before its last
// layer, or its readout input is not a spatial map.
StatusOr<FeatureExtractor> split_at_readout(const Model& base);

// The calibrated channel as a model: prefix + the fit's readout (kRidge: one Dense over the
// flattened features; kFactorized: a 1x1 conv to one channel, then an h x w depthwise with the
// bias), so its output equals predict(fit, features) up to float rounding.
std::shared_ptr<const Model> calibrated_model(const Model& base, const FeatureExtractor& features,
                                              const ChannelFit& fit, const std::string& id,
                                              const std::string& description);

// Every channel of a session as one model with one output per channel (all fits of one form):
// the shared models' own shape (features, then a C-output readout). A synthesis for channel k
// runs on it with output index k and returns every channel's prediction for its stimulus at the
// cost of one channel's.
std::shared_ptr<const Model> session_model(const Model& base, const FeatureExtractor& features,
                                           const std::vector<ChannelFit>& fits,
                                           const std::string& id, const std::string& description);

}  // namespace stimloop::sessions
