// What OpenSession fixes for the life of a session, validated in one place and stored as JSON
// (the store keeps it opaque), plus the checks every session id and channel id goes through.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/sessions/calibration.h"

namespace stimloop::sessions {

struct ChannelSpec {
  std::string id;
  std::string name;
};

struct CalibrationSettings {
  ReadoutForm form = ReadoutForm::kRidge;
  int folds = 5;
  int min_stimuli = 10;  // stimuli with valid trials before the first fit
  // A refit keeps the syntheses prepared for the next block while every target channel's fit
  // agrees at least this much (fit_agreement) with the fit they were started on; else they restart.
  double prepared_min_agreement = 0.95;
  // RIDGE only: sigma (feature-map positions) of the spatial smoothness prior; 0: none.
  double ridge_smoothing = 0.0;
};

struct SessionConfig {
  std::string session_id;
  std::string rig;
  std::vector<ChannelSpec> channels;
  std::string base_model;
  std::string pool;
  CalibrationSettings calibration;
  std::string notes;
};

inline constexpr int kMaxChannels = 256;
inline constexpr int kMaxBlockStimuli = 256;
inline constexpr int kMaxTrialsPerReport = 4096;

// 1 to 64 characters of [A-Za-z0-9_.-], not starting with '.'; the message names `field`.
Status check_id(const std::string& id, const std::string& field);
// Model id of a calibrated channel.
std::string channel_model_id(const std::string& session_id, const std::string& channel_id);
// Every field's limits; fills defaults (folds 0 -> 5, min_stimuli 0 -> 10,
// prepared_min_agreement 0 -> 0.95).
Status validate(SessionConfig& config);

nlohmann::json to_json(const SessionConfig& config);
StatusOr<SessionConfig> config_from_json(const std::string& text);

// User input echoed in a message: at most `limit` characters.
std::string clip(const std::string& text, std::size_t limit = 100);

}  // namespace stimloop::sessions
