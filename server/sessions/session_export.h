// Exporting a closed-loop session as a plain directory that anyone can read without stimloop:
// JSON, CSV, NumPy .npy, PNG images and Keras .keras models, with a README.txt that says what
// each file holds. The caller gathers the rows (SessionStore) and the live state (calibration,
// calibrated models); this file only writes, so it is testable without a server.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "models/model.h"
#include "server/sessions/session_config.h"
#include "server/sessions/session_store.h"

namespace stimloop::sessions {

struct ExportInput {
  SessionConfig config;
  SessionRow row;
  std::vector<StimulusRow> stimuli;  // block, position order (SessionStore::stimuli)
  std::vector<TrialRow> trials;      // storage order (SessionStore::trials)
  std::vector<FitRow> fits;
  std::string calibration_json;  // the live calibration state, as JSON text
  // PNG bytes of a stored image by its SHA-256 (SessionStore::get_image).
  std::function<StatusOr<std::vector<std::uint8_t>>(const std::string& sha256)> image;
  // Channel id -> its calibrated model (channels not calibrated yet are absent).
  std::vector<std::pair<std::string, std::shared_ptr<const Model>>> channel_models;
};

struct ExportSummary {
  std::string directory;           // the final directory
  std::vector<std::string> files;  // relative to it, in the order written
};

// Writes into directory + ".partial", fsyncs every file and directory, then renames it to
// `directory` (and fsyncs its parent), so `directory` either does not exist or is complete:
//   session.json          config, row counts, channels, calibration, fit history
//   stimuli.csv           one row per stimulus handed out (provenance, image, predictions)
//   stimuli_sources.jsonl each stimulus's full provenance (pool image, replayable synthesis record)
//   trials.csv            one row per stored trial (responses per channel)
//   trials.npy            float64, trials x channels responses, rows in trials.csv order
//   images/<stimulus_id>.png, models/<channel_id>.keras (write_keras), README.txt
// FAILED_PRECONDITION naming the path when `directory` or its .partial already exists (a
// .partial is what an interrupted export leaves: remove it by hand); INVALID_ARGUMENT for a
// stimulus or channel id that is not a safe file name, or a stimulus id given twice; DATA_LOSS
// when an image's bytes do not match their SHA-256. On error nothing is left behind.
StatusOr<ExportSummary> export_session(const ExportInput& input, const std::string& directory);

}  // namespace stimloop::sessions
