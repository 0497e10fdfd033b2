// The durable half of closed-loop sessions: one SQLite database (WAL, synchronous=FULL) under the
// server's data directory, and the images shown, content-addressed by SHA-256 beside it
// (images/<first two hex digits>/<sha256>.png, written to a temporary name, fsynced and renamed
// before any row refers to them). A call that returns OK has committed: a kill -9 right after it
// loses nothing. Everything else a session holds in memory (features, fits, resident calibrated
// models, prepared blocks) is rebuilt from here after a restart.
//
// The store checks integrity (ids exist, keys are unique, idempotent retries) but knows nothing
// of models or calibration: a session's configuration and a stimulus's provenance are opaque
// JSON text to it. Thread-safe: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace stimloop::sessions {

struct SessionRow {
  std::string id;
  std::string config_json;  // fixed at creation (OpenSession's request, normalised)
  bool closed = false;
  std::int64_t created_unix_ms = 0;
  std::int64_t closed_unix_ms = 0;  // 0 while open
  int blocks = 0;                   // blocks handed out so far
  int stimuli = 0;
  int trials = 0;  // stored trials, valid or not
};

struct StimulusRow {
  std::string stimulus_id;  // unique within the session
  int block_index = 0;      // 0, 1, ... in the order blocks were handed out
  int position = 0;         // within its block
  std::string origin;       // "pool", "synthesized", "reference"
  std::string source_json;  // where it came from: pool image name, synthesis record, ...
  std::string image_sha256;
  std::vector<double> predicted;  // the model's prediction per channel when it was handed out
};

struct BlockRow {
  std::string block_id;  // client-chosen request key, or generated; unique within the session
  int block_index = 0;
  std::string strategy_json;
  std::vector<StimulusRow> stimuli;
};

struct TrialRow {
  std::string stimulus_id;
  int repeat_index = 0;
  bool valid = true;                  // false: aborted (stored, never fitted)
  std::vector<double> responses;      // one per channel, finite and >= 0
  std::int64_t received_unix_ms = 0;  // set by the store
};

struct ReportOutcome {
  int stored = 0;      // new trials written by this call
  int duplicates = 0;  // trials already stored with identical values (a retry): not stored again
};

struct FitRow {
  int version = 0;  // 1, 2, ... per session
  std::string channel_id;
  std::string summary_json;  // form, lambda, cv_r, images, ...
  std::int64_t created_unix_ms = 0;
};

class SessionStore {
 public:
  // Opens (creating if needed) <data_dir>/sessions.sqlite3 and <data_dir>/images/. Creates
  // data_dir. Errors name the path (PERMISSION_DENIED for an unwritable one, DATA_LOSS for a
  // file that is not a stimloop session database).
  static StatusOr<std::unique_ptr<SessionStore>> open(const std::string& data_dir);
  ~SessionStore();

  // Creates the session, or returns the existing one when `id` exists with the same config_json
  // (an idempotent retry); FAILED_PRECONDITION ("session ... exists with another configuration")
  // otherwise.
  StatusOr<SessionRow> create_session(const std::string& id, const std::string& config_json);
  StatusOr<SessionRow> get_session(const std::string& id) const;  // NOT_FOUND naming the id
  std::vector<SessionRow> list_sessions() const;                  // oldest first
  // Idempotent; NOT_FOUND for an unknown id.
  StatusOr<SessionRow> close_session(const std::string& id);

  // Writes the PNG bytes under their SHA-256 (no-op when present); returns the hex digest.
  StatusOr<std::string> put_image(std::span<const std::uint8_t> png);
  // NOT_FOUND for an unknown digest; DATA_LOSS when the file's bytes no longer match it.
  StatusOr<std::vector<std::uint8_t>> get_image(const std::string& sha256) const;

  // Stores a block and its stimuli in one transaction; block_index is assigned by the store
  // (the session's next) and returned. FAILED_PRECONDITION for a closed session,
  // INVALID_ARGUMENT for a stimulus id already used in the session or an image not put first.
  StatusOr<int> add_block(const std::string& session_id, BlockRow block);
  // The block with this id, if any (a NextBlock retried with the same key returns it again).
  StatusOr<std::optional<BlockRow>> find_block(const std::string& session_id,
                                               const std::string& block_id) const;
  std::vector<StimulusRow> stimuli(const std::string& session_id) const;  // block, position order

  // Stores trials in one transaction, all or none. A trial is keyed by (stimulus_id,
  // repeat_index): one already stored with identical valid flag and responses counts as a
  // duplicate; with different values the whole call fails (FAILED_PRECONDITION naming
  // trials[i]). INVALID_ARGUMENT naming trials[i] for an unknown stimulus id, a response count
  // different from `channels`, a non-finite or negative response, or the same key twice in one
  // call. FAILED_PRECONDITION for a closed session.
  StatusOr<ReportOutcome> add_trials(const std::string& session_id, int channels,
                                     std::span<const TrialRow> trials);
  std::vector<TrialRow> trials(const std::string& session_id) const;  // in storage order

  // Calibration history (informational: fits are recomputed from the trials after a restart).
  Status add_fits(const std::string& session_id, std::span<const FitRow> fits);
  std::vector<FitRow> fits(const std::string& session_id) const;

 private:
  SessionStore();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stimloop::sessions
