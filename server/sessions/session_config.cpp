#include "server/sessions/session_config.h"

#include <cmath>
#include <set>

#include "server/engine/model_registry.h"

namespace stimloop::sessions {

std::string clip(const std::string& text, std::size_t limit) {
  return truncated_id(text, limit);  // one truncation rule for every echoed value
}

Status check_id(const std::string& id, const std::string& field) {
  if (id.empty()) return invalid_argument(field + ": required");
  if (id.size() > 64) {
    return invalid_argument(field + ": '" + clip(id, 64) + "' is longer than 64 characters");
  }
  if (id[0] == '.') return invalid_argument(field + ": may not start with '.'");
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return invalid_argument(field + ": '" + clip(id) +
                              "' may hold only letters, digits, '-', '_' and '.'");
    }
  }
  return Status::Ok();
}

std::string channel_model_id(const std::string& session_id, const std::string& channel_id) {
  return session_id + "/" + channel_id;
}

Status validate(SessionConfig& c) {
  RETURN_IF_ERROR(check_id(c.session_id, "session_id"));
  if (c.rig.size() > 256) return invalid_argument("rig: longer than 256 characters");
  if (c.notes.size() > 4096) return invalid_argument("notes: longer than 4096 characters");
  if (c.channels.empty()) return invalid_argument("channels: at least one channel is required");
  if (static_cast<int>(c.channels.size()) > kMaxChannels) {
    return invalid_argument("channels: " + std::to_string(c.channels.size()) +
                            " channels; at most " + std::to_string(kMaxChannels));
  }
  std::set<std::string> seen;
  for (std::size_t i = 0; i < c.channels.size(); ++i) {
    const std::string field = "channels[" + std::to_string(i) + "]";
    RETURN_IF_ERROR(check_id(c.channels[i].id, field + ".id"));
    if (c.channels[i].name.size() > 256) {
      return invalid_argument(field + ".name: longer than 256 characters");
    }
    if (!seen.insert(c.channels[i].id).second) {
      return invalid_argument(field + ".id: '" + c.channels[i].id + "' appears twice");
    }
  }
  if (c.base_model.empty()) return invalid_argument("base_model: required");
  if (c.pool.empty()) return invalid_argument("pool: required (a --pool NAME of the server)");
  if (c.calibration.folds == 0) c.calibration.folds = 5;
  if (c.calibration.folds < 2 || c.calibration.folds > 20) {
    return invalid_argument("calibration.folds: " + std::to_string(c.calibration.folds) +
                            " is outside 2..20");
  }
  if (c.calibration.min_stimuli == 0) c.calibration.min_stimuli = 10;
  if (c.calibration.min_stimuli < 3 || c.calibration.min_stimuli > 100000) {
    return invalid_argument("calibration.min_stimuli: " +
                            std::to_string(c.calibration.min_stimuli) + " is outside 3..100000");
  }
  const double smoothing = c.calibration.ridge_smoothing;
  if (!std::isfinite(smoothing) || smoothing < 0.0 || smoothing > 8.0) {
    return invalid_argument("calibration.ridge_smoothing: " + std::to_string(smoothing) +
                            " is outside 0..8 (feature-map positions)");
  }
  if (smoothing > 0.0 && c.calibration.form != ReadoutForm::kRidge) {
    return invalid_argument(
        "calibration.ridge_smoothing: applies to the RIDGE readout only (the FACTORIZED readout's "
        "mask is its own spatial prior)");
  }
  double& agreement = c.calibration.prepared_min_agreement;
  if (agreement == 0.0) agreement = 0.95;
  if (!std::isfinite(agreement) || agreement < -1.0 || agreement > 1.0) {
    return invalid_argument("calibration.prepared_min_agreement: " + std::to_string(agreement) +
                            " is outside -1..1");
  }
  return Status::Ok();
}

nlohmann::json to_json(const SessionConfig& c) {
  nlohmann::json channels = nlohmann::json::array();
  for (const auto& ch : c.channels) channels.push_back({{"id", ch.id}, {"name", ch.name}});
  return {{"session_id", c.session_id},
          {"rig", c.rig},
          {"channels", channels},
          {"base_model", c.base_model},
          {"pool", c.pool},
          {"calibration",
           {{"form", to_string(c.calibration.form)},
            {"folds", c.calibration.folds},
            {"min_stimuli", c.calibration.min_stimuli},
            {"prepared_min_agreement", c.calibration.prepared_min_agreement},
            {"ridge_smoothing", c.calibration.ridge_smoothing}}},
          {"notes", c.notes}};
}

StatusOr<SessionConfig> config_from_json(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    SessionConfig c;
    c.session_id = j.at("session_id").get<std::string>();
    c.rig = j.at("rig").get<std::string>();
    for (const auto& ch : j.at("channels")) {
      c.channels.push_back({ch.at("id").get<std::string>(), ch.at("name").get<std::string>()});
    }
    c.base_model = j.at("base_model").get<std::string>();
    c.pool = j.at("pool").get<std::string>();
    const auto& cal = j.at("calibration");
    ASSIGN_OR_RETURN(c.calibration.form, parse_readout_form(cal.at("form").get<std::string>()));
    c.calibration.folds = cal.at("folds").get<int>();
    c.calibration.min_stimuli = cal.at("min_stimuli").get<int>();
    // Absent in sessions stored before the setting existed.
    c.calibration.prepared_min_agreement = cal.value("prepared_min_agreement", 0.95);
    c.calibration.ridge_smoothing = cal.value("ridge_smoothing", 0.0);
    c.notes = j.at("notes").get<std::string>();
    return c;
  } catch (const nlohmann::json::exception& e) {
    return data_loss(std::string("stored session configuration is unreadable: ") + e.what());
  }
}

}  // namespace stimloop::sessions
