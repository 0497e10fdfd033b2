// Closed-loop sessions, live: the store (durable truth), the image pools, each session's
// features and fits in memory, and the calibrated channels installed as models in the registry.
// Every call blocks until its work is done (store commits, engine jobs, fits), so callers run it
// off gRPC's threads (server/service/sessions_service.cpp). Calls on one session are serialised;
// different sessions proceed in parallel. After a restart, resume() rebuilds every open session
// from the store: features recomputed from the stored images, readouts refitted, models
// reinstalled.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/engine/engine.h"
#include "server/engine/model_registry.h"
#include "server/engine/synthesize_job.h"
#include "server/sessions/image_pool.h"
#include "server/sessions/session_config.h"
#include "server/sessions/session_export.h"
#include "server/sessions/session_store.h"
#include "server/synthesis/request.h"

namespace stimloop::sessions {

struct ChannelCalibration {
  std::string channel_id;
  bool calibrated = false;
  std::string model_id;
  double cv_r = 0.0;
  double lambda = 0.0;
  int stimuli = 0;
  // fit_agreement() of this fit with the previous one; 1 for a channel's first fit.
  double agreement_with_previous = 1.0;
};

struct CalibrationState {
  int version = 0;
  std::string model_id;  // the session's model (one output per channel) once calibrated
  ReadoutForm form = ReadoutForm::kRidge;
  std::vector<ChannelCalibration> channels;
};

struct SessionStatus {
  SessionConfig config;
  SessionRow row;
  int pool_images = 0;
  CalibrationState calibration;
};

enum class StrategyKind { kPool, kSynthesize, kAdept, kCommittee };
const char* to_string(StrategyKind kind);

struct StrategyShare {
  StrategyKind kind = StrategyKind::kPool;
  int count = 0;
};

struct BlockRequest {
  std::string session_id;
  int count = 1;
  std::vector<StrategyShare> shares;    // adding up to count - references.size()
  std::vector<std::string> references;  // pool image names, shown first
  synthesis::ObjectiveKind objective = synthesis::ObjectiveKind::kMax;
  std::optional<synthesis::MethodKind> method;  // unset: the objective's default
  int steps = 0;                                // 0: the method's default
  std::uint64_t seed = 0;                       // 0: derived from session id and block index
  // Full synthesis parameters (checked by the caller); replaces objective, method and steps.
  std::optional<synthesis::SynthesisRequest> synthesis;
  engine::Priority priority = engine::Priority::kRig;
  std::optional<engine::Clock::time_point> deadline;
  std::string block_id;  // optional idempotency key
  // Once this block is handed out, start the next block's syntheses in the background (below
  // rig work), assuming the next request asks for the same; see SessionManager::prepare_next.
  bool prepare_next = true;
};

struct BlockStimulus {
  StimulusRow row;
  std::vector<std::uint8_t> png;
};

struct BlockResult {
  std::string block_id;
  int block_index = 0;
  std::vector<BlockStimulus> stimuli;
  int calibration_version = 0;
  std::vector<std::string> uncalibrated_channels;
  std::string stop_reason = "COMPLETED";
  bool replayed = false;
  int prepared_stimuli = 0;  // synthesized stimuli taken from the batch prepared ahead
};

struct ReportResult {
  ReportOutcome outcome;
  int total_trials = 0;
  CalibrationState calibration;
  // Stimuli being prepared for the next block that this report's refit made stale (their
  // channels' fits agree less than calibration.prepared_min_agreement); they are started again on
  // the new fit.
  int prepared_invalidated = 0;
};

struct SessionManagerOptions {
  std::string data_dir;
  std::vector<PoolFlag> pools;
};

class SessionManager {
 public:
  // Opens the store and loads every pool (errors name the pool and file).
  static StatusOr<std::unique_ptr<SessionManager>> create(const SessionManagerOptions& options,
                                                          engine::ModelRegistry& registry,
                                                          engine::Engine& engine);
  ~SessionManager();

  // Rebuilds every open session (features, fits, installed models). Call once after create(),
  // before serving; sessions that fail to resume are logged and left to their next call.
  void resume();

  StatusOr<SessionStatus> open(SessionConfig config);
  StatusOr<SessionStatus> get(const std::string& session_id);
  std::vector<SessionStatus> list();
  StatusOr<SessionStatus> close(const std::string& session_id);
  StatusOr<BlockResult> next_block(const BlockRequest& request);
  // Writes the session under <data_dir>/exports/<id>-<unix ms> (session_export.h).
  StatusOr<ExportSummary> export_session(const std::string& session_id);
  StatusOr<ReportResult> report(const std::string& session_id, std::vector<TrialRow> trials,
                                engine::Priority priority);

  std::vector<std::string> pool_names() const;

 private:
  struct Base;
  struct Live;
  struct PoolFeatures;
  SessionManager(SessionManagerOptions options, engine::ModelRegistry& registry,
                 engine::Engine& engine);
  StatusOr<std::shared_ptr<Live>> live(const std::string& session_id);
  StatusOr<std::shared_ptr<Base>> base(const std::string& model_id);
  StatusOr<const ImagePool*> pool(const std::string& name) const;
  Status rebuild(Live& s, engine::Priority priority);
  // Computes the base's features of these images into Live::pending.
  Status add_features(Live& s, const std::vector<std::string>& stimulus_ids,
                      const std::vector<const std::uint8_t*>& pixels, engine::Priority priority,
                      std::optional<engine::Clock::time_point> deadline);
  Status refit(Live& s, engine::Priority priority);
  // Starts the syntheses of block `block_index` as `request` would make them, on the current fit,
  // at the less urgent of INTERACTIVE and the request's priority, without a deadline: they run
  // while the rig shows the current block, and NextBlock collects them if it asks for the same.
  void prepare_next(Live& s, const BlockRequest& request, int block_index);
  // After a refit: drops (and starts again) the prepared syntheses whose target channels'
  // fits agree less than the session's prepared_min_agreement; returns how many stimuli it dropped.
  int revalidate_prepared(Live& s);
  // Uploads `model` (on the engine's thread) and installs or replaces it in the registry.
  Status install(std::shared_ptr<const Model> model, const std::string& session_id,
                 engine::Priority priority);
  SessionStatus status_of(Live& s);
  // The base's features of every pool image, computed once per (base, pool) in the background at
  // campaign priority; NextBlock uses them for pool images (no feature pass) and for ADEPT.
  std::shared_ptr<PoolFeatures> pool_features(const std::shared_ptr<Base>& base,
                                              const ImagePool& pool);
  void compute_pool_features(std::shared_ptr<Base> base, const ImagePool* pool,
                             std::shared_ptr<PoolFeatures> cache);
  StatusOr<std::vector<float>> pool_predictions(const Live& s) const;
  // OK once the pool's features are all cached; else why not (naming the strategy).
  Status pool_features_ready(const Live& s, const char* strategy) const;
  // COMMITTEE: members x pool x channels predictions of readouts fitted to random subsets.
  StatusOr<std::vector<float>> committee_predictions(Live& s, int members) const;
  std::vector<double> predict_channels(const Live& s, std::span<const float> features) const;

  SessionManagerOptions options_;
  engine::ModelRegistry& registry_;
  engine::Engine& engine_;
  std::unique_ptr<SessionStore> store_;
  std::map<std::string, ImagePool> pools_;
  std::mutex mutex_;  // guards live_ and bases_ (not the sessions themselves)
  std::map<std::string, std::shared_ptr<Live>> live_;
  std::map<std::string, std::shared_ptr<Base>> bases_;
  std::map<std::string, std::shared_ptr<PoolFeatures>> pool_features_;
  std::vector<std::thread> background_;
  std::atomic<bool> stopping_{false};
  // Measured cost of the feature pass, so a synthesis leaves it time before the deadline.
  std::atomic<double> feature_ms_per_image_{5.0};
  // Measured time from a block's items to its reply (store writes, encoding), kept free before a
  // deadline; and the session models' step times, shared by their synthesis jobs.
  std::atomic<double> finishing_ms_{20.0};
  std::shared_ptr<engine::StepTimeBook> step_times_ = std::make_shared<engine::StepTimeBook>();
};

}  // namespace stimloop::sessions
