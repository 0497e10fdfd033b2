#include "server/sessions/session_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "models/preprocess.h"
#include "server/engine/task_job.h"
#include "server/sessions/block_maker.h"
#include "server/sessions/readout_model.h"
#include "server/sessions/synthesis_batch.h"
#include "server/synthesis/rng.h"

namespace stimloop::sessions {
namespace {

// Images a feature job forwards per engine slice: small enough that a rig's request waits at
// most one such slice behind a session rebuilding its features.
constexpr int kFeatureChunk = 16;

std::string session_request_id(const std::string& session_id, const char* what) {
  return "session:" + session_id + ":" + what;
}

}  // namespace

struct SessionManager::Base {
  std::shared_ptr<const Model> model;
  FeatureExtractor features;
  std::unique_ptr<ResidentNetwork> prefix;  // resident on the backend; used on the engine thread
};

struct SessionManager::PoolFeatures {
  std::mutex mutex;
  std::vector<float> rows;  // pool size x p, allocated whole up front (rows never move)
  int done = 0;             // leading images whose rows are final
  int total = 0;
  Status failed;
  // A row once final is never written again, so it may be read without the lock.
  const float* row(int index, std::size_t p) {
    std::lock_guard lock(mutex);
    return index < done ? rows.data() + p * index : nullptr;
  }
  bool complete() {
    std::lock_guard lock(mutex);
    return done == total;
  }
};

struct SessionManager::Live {
  std::mutex mutex;  // serialises the session's calls
  SessionConfig config;
  const ImagePool* pool = nullptr;
  std::shared_ptr<Base> base;
  std::unique_ptr<FeatureBank> bank;
  std::map<std::string, int> row_of;  // stimulus id -> bank row
  // Features of stimuli handed out but not fitted yet: they join the bank (and its Gram matrix,
  // O(n p) an image) only once reported, so handing out a block costs no Gram update.
  std::map<std::string, std::vector<float>> pending;
  std::set<std::string> shown_pool;             // pool image names handed out before
  std::vector<std::optional<ChannelFit>> fits;  // per channel
  std::shared_ptr<PoolFeatures> pool_cache;
  CalibrationState calibration;
  bool rebuilt = false;
  // Syntheses of the next block started in the background, and the request they assume.
  std::vector<std::unique_ptr<SynthesisBatch>> prepared;
  std::optional<BlockRequest> prepared_request;
  int prepared_block_index = -1;
  std::vector<std::optional<ChannelFit>> prepared_fits;  // the fits they were started on
};

const char* to_string(StrategyKind kind) {
  switch (kind) {
    case StrategyKind::kPool:
      return "pool";
    case StrategyKind::kSynthesize:
      return "synthesize";
    case StrategyKind::kAdept:
      return "adept";
    case StrategyKind::kCommittee:
      return "committee";
  }
  return "?";
}

SessionManager::SessionManager(SessionManagerOptions options, engine::ModelRegistry& registry,
                               engine::Engine& engine)
    : options_(std::move(options)), registry_(registry), engine_(engine) {}

SessionManager::~SessionManager() {
  stopping_ = true;
  for (auto& t : background_) t.join();
}

// Above this the pool's features are not cached (ADEPT is then unavailable for the pool).
constexpr std::int64_t kMaxPoolFeatureBytes = std::int64_t{4} << 30;

std::shared_ptr<SessionManager::PoolFeatures> SessionManager::pool_features(
    const std::shared_ptr<Base>& base, const ImagePool& pool) {
  std::lock_guard lock(mutex_);
  const std::string key = base->model->info.id + "|" + pool.name;
  if (auto it = pool_features_.find(key); it != pool_features_.end()) return it->second;
  auto cache = std::make_shared<PoolFeatures>();
  cache->total = static_cast<int>(pool.images.size());
  const std::int64_t bytes = base->features.shape.size() * cache->total * 4;
  if (bytes > kMaxPoolFeatureBytes) {
    cache->failed =
        resource_exhausted("the features of pool '" + pool.name + "' on " + base->model->info.id +
                           " would take " + std::to_string(bytes >> 20) + " MiB; not cached");
  } else {
    cache->rows.resize(static_cast<std::size_t>(base->features.shape.size()) * cache->total);
    background_.emplace_back(
        [this, base, p = &pool, cache] { compute_pool_features(base, p, cache); });
  }
  pool_features_.emplace(key, cache);
  return cache;
}

void SessionManager::compute_pool_features(std::shared_ptr<Base> base, const ImagePool* pool,
                                           std::shared_ptr<PoolFeatures> cache) {
  const ModelInfo& info = base->model->info;
  const std::size_t p = static_cast<std::size_t>(base->features.shape.size());
  const std::size_t image_bytes = static_cast<std::size_t>(info.in_h) * info.in_w * 3;
  for (int first = 0; first < cache->total && !stopping_; first += kFeatureChunk) {
    const int n = std::min(kFeatureChunk, cache->total - first);
    std::vector<std::uint8_t> raw(image_bytes * n);
    for (int i = 0; i < n; ++i) {
      const auto& px = pool->images[first + i].image.pixels;
      std::copy(px.begin(), px.end(), raw.begin() + image_bytes * i);
    }
    // Rows [first, first + n) are written only here, before `done` covers them.
    std::span<float> out(cache->rows.data() + p * first, p * n);
    Status st = engine::run_on_engine(
        engine_, "session:pool-features", engine::Priority::kCampaign, std::nullopt, [&] {
          const std::vector<float> input = recenter_rgb8(raw, base->model->channel_means);
          return base->prefix->forward(input, n, out);
        });
    std::lock_guard lock(cache->mutex);
    if (!st.ok()) {
      cache->failed = st;
      // UNAVAILABLE: the engine is shutting down, which is not the pool's fault.
      if (st.code() == StatusCode::kUnavailable) {
        spdlog::info("event=pool_features_stopped pool={}", pool->name);
      } else {
        spdlog::warn("event=pool_features_failed pool={} error=\"{}\"", pool->name, st.message());
      }
      return;
    }
    cache->done = first + n;
  }
  if (!stopping_) spdlog::info("event=pool_features_ready pool={} base={}", pool->name, info.id);
}

Status SessionManager::pool_features_ready(const Live& s, const char* strategy) const {
  PoolFeatures& cache = *s.pool_cache;
  std::lock_guard lock(cache.mutex);
  const std::string who = std::string("strategy: ") + strategy;
  if (!cache.failed.ok()) return cache.failed.with_context(who);
  if (cache.done < cache.total) {
    return failed_precondition(who +
                               " needs the base model's features of every pool image, "
                               "still being computed (" +
                               std::to_string(cache.done) + " of " + std::to_string(cache.total) +
                               "); ask again shortly or use POOL");
  }
  return Status::Ok();
}

StatusOr<std::vector<float>> SessionManager::committee_predictions(Live& s, int members) const {
  RETURN_IF_ERROR(pool_features_ready(s, "COMMITTEE"));
  std::vector<int> rows;
  for (const auto& [id, row] : s.row_of) rows.push_back(row);
  std::sort(rows.begin(), rows.end());
  const int channels = static_cast<int>(s.fits.size());
  const int n = static_cast<int>(rows.size());
  if (n < 6) return failed_precondition("strategy: COMMITTEE needs at least 6 fitted stimuli");
  // Members refit the recorded means (valid trials, repeats averaged), as refit() does.
  std::map<int, std::vector<double>> sums;
  std::map<int, int> counts;
  for (const TrialRow& t : store_->trials(s.config.session_id)) {
    auto it = s.row_of.find(t.stimulus_id);
    if (!t.valid || it == s.row_of.end()) continue;
    auto& sum = sums[it->second];
    sum.resize(channels, 0.0);
    for (int c = 0; c < channels; ++c) sum[c] += t.responses[c];
    ++counts[it->second];
  }
  std::erase_if(rows, [&](int r) { return !counts.count(r); });
  // Each member: a seeded 80 % subset of the fitted stimuli, the current fit's penalties.
  std::vector<double> lambdas;
  for (const auto& f : s.fits) {
    if (f) lambdas.push_back(f->lambda);
  }
  std::sort(lambdas.begin(), lambdas.end());
  CalibrationOptions options;
  options.form = ReadoutForm::kRidge;  // cheap and form-independent disagreement
  options.folds = 2;
  if (!lambdas.empty() && s.config.calibration.form == ReadoutForm::kRidge) {
    options.lambdas = {lambdas[lambdas.size() / 2]};
  }
  const PoolFeatures& cache = *s.pool_cache;
  const std::size_t p = static_cast<std::size_t>(s.base->features.shape.size());
  const int pool = cache.total;
  std::vector<float> out(static_cast<std::size_t>(members) * pool * channels);
  for (int m = 0; m < members; ++m) {
    std::vector<int> subset = rows;
    synthesis::Rng rng(0x5eed0000u + m);
    for (int i = static_cast<int>(subset.size()) - 1; i > 0; --i) {
      std::swap(subset[i], subset[rng.uniform_int(0, i)]);
    }
    subset.resize(std::max(3, static_cast<int>(subset.size() * 4 / 5)));
    std::vector<double> targets;
    for (int r : subset) {
      for (int c = 0; c < channels; ++c) targets.push_back(sums[r][c] / counts[r]);
    }
    ASSIGN_OR_RETURN(auto fits, s.bank->fit(subset, targets, channels, options));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < pool; ++i) {
      const std::span<const float> row(cache.rows.data() + p * i, p);
      for (int c = 0; c < channels; ++c) {
        out[(static_cast<std::size_t>(m) * pool + i) * channels + c] =
            static_cast<float>(predict(fits[c], s.base->features.shape, row));
      }
    }
  }
  return out;
}

StatusOr<std::vector<float>> SessionManager::pool_predictions(const Live& s) const {
  RETURN_IF_ERROR(pool_features_ready(s, "ADEPT"));
  const PoolFeatures& cache = *s.pool_cache;
  const int n = cache.total, channels = static_cast<int>(s.fits.size());
  const std::size_t p = static_cast<std::size_t>(s.base->features.shape.size());
  std::vector<float> out(static_cast<std::size_t>(n) * channels);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::span<const float> row(cache.rows.data() + p * i, p);
    for (int c = 0; c < channels; ++c) {
      out[static_cast<std::size_t>(i) * channels + c] =
          s.fits[c] ? static_cast<float>(predict(*s.fits[c], s.base->features.shape, row)) : 0.0f;
    }
  }
  return out;
}

StatusOr<std::unique_ptr<SessionManager>> SessionManager::create(
    const SessionManagerOptions& options, engine::ModelRegistry& registry, engine::Engine& engine) {
  auto m = std::unique_ptr<SessionManager>(new SessionManager(options, registry, engine));
  ASSIGN_OR_RETURN(m->store_, SessionStore::open(options.data_dir));
  for (const PoolFlag& flag : options.pools) {
    if (m->pools_.count(flag.name)) {
      return invalid_argument("--pool: the name '" + flag.name + "' is given twice");
    }
    ASSIGN_OR_RETURN(auto pool, load_image_pool(flag.name, flag.path));
    m->pools_.emplace(flag.name, std::move(pool));
  }
  return m;
}

std::vector<std::string> SessionManager::pool_names() const {
  std::vector<std::string> names;
  for (const auto& [name, pool] : pools_) names.push_back(name);
  return names;
}

StatusOr<const ImagePool*> SessionManager::pool(const std::string& name) const {
  auto it = pools_.find(name);
  if (it != pools_.end()) return &it->second;
  std::string known;
  for (const auto& n : pool_names()) known += (known.empty() ? "" : ", ") + n;
  return not_found("pool: unknown pool '" + clip(name) + "' (this server has " +
                   (known.empty() ? std::string("none; start it with --pool NAME=PATH") : known) +
                   ")");
}

StatusOr<std::shared_ptr<SessionManager::Base>> SessionManager::base(const std::string& model_id) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = bases_.find(model_id); it != bases_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(auto resident, registry_.find(model_id));
  auto b = std::make_shared<Base>();
  b->model = resident->model;
  ASSIGN_OR_RETURN(b->features, split_at_readout(*b->model));
  RETURN_IF_ERROR(engine::run_on_engine(
      engine_, "session:upload", engine::Priority::kInteractive, std::nullopt, [&]() -> Status {
        ASSIGN_OR_RETURN(b->prefix, registry_.backend().upload(b->features.prefix));
        return Status::Ok();
      }));
  std::lock_guard lock(mutex_);
  return bases_.emplace(model_id, b).first->second;  // a racing loser's copy is dropped
}

StatusOr<std::shared_ptr<SessionManager::Live>> SessionManager::live(const std::string& id) {
  RETURN_IF_ERROR(check_id(id, "session_id"));
  {
    std::lock_guard lock(mutex_);
    if (auto it = live_.find(id); it != live_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(SessionRow row, store_->get_session(id));
  auto s = std::make_shared<Live>();
  ASSIGN_OR_RETURN(s->config, config_from_json(row.config_json));
  ASSIGN_OR_RETURN(s->pool, pool(s->config.pool));
  ASSIGN_OR_RETURN(s->base, base(s->config.base_model));
  s->bank =
      std::make_unique<FeatureBank>(s->base->features.shape, s->config.calibration.ridge_smoothing);
  s->pool_cache = pool_features(s->base, *s->pool);
  s->fits.resize(s->config.channels.size());
  s->calibration.form = s->config.calibration.form;
  for (const auto& ch : s->config.channels) {
    ChannelCalibration cal;
    cal.channel_id = ch.id;
    s->calibration.channels.push_back(cal);
  }
  std::lock_guard lock(mutex_);
  return live_.emplace(id, s).first->second;
}

Status SessionManager::add_features(Live& s, const std::vector<std::string>& ids,
                                    const std::vector<const std::uint8_t*>& pixels,
                                    engine::Priority priority,
                                    std::optional<engine::Clock::time_point> deadline) {
  const Base& b = *s.base;
  const ModelInfo& info = b.model->info;
  const std::size_t image_bytes = static_cast<std::size_t>(info.in_h) * info.in_w * 3;
  const std::size_t p = static_cast<std::size_t>(b.features.shape.size());
  for (std::size_t first = 0; first < ids.size(); first += kFeatureChunk) {
    const int n = static_cast<int>(std::min<std::size_t>(kFeatureChunk, ids.size() - first));
    std::vector<std::uint8_t> raw(image_bytes * n);
    for (int i = 0; i < n; ++i) {
      std::copy(pixels[first + i], pixels[first + i] + image_bytes, raw.begin() + image_bytes * i);
    }
    std::vector<float> features(p * n);
    RETURN_IF_ERROR(engine::run_on_engine(
        engine_, session_request_id(s.config.session_id, "features"), priority, deadline, [&] {
          const auto start = engine::Clock::now();
          const std::vector<float> input = recenter_rgb8(raw, b.model->channel_means);
          Status st = b.prefix->forward(input, n, features);
          const double ms =
              std::chrono::duration<double, std::milli>(engine::Clock::now() - start).count();
          feature_ms_per_image_.store(0.7 * feature_ms_per_image_.load() + 0.3 * ms / n);
          return st;
        }));
    for (int i = 0; i < n; ++i) {
      s.pending[ids[first + i]].assign(features.begin() + p * i, features.begin() + p * (i + 1));
    }
  }
  return Status::Ok();
}

std::vector<double> SessionManager::predict_channels(const Live& s,
                                                     std::span<const float> features) const {
  std::vector<double> out;
  if (s.calibration.model_id.empty()) return out;  // not calibrated yet
  for (const auto& fit : s.fits) {
    out.push_back(fit ? predict(*fit, s.base->features.shape, features) : 0.0);
  }
  return out;
}

Status SessionManager::install(std::shared_ptr<const Model> model, const std::string& session_id,
                               engine::Priority priority) {
  auto resident = std::make_shared<engine::ResidentModel>();
  resident->model = model;
  RETURN_IF_ERROR(engine::run_on_engine(
      engine_, session_request_id(session_id, "install"), priority, std::nullopt, [&]() -> Status {
        ASSIGN_OR_RETURN(resident->network, registry_.backend().upload(model->network));
        return Status::Ok();
      }));
  return registry_.install(resident);
}

Status SessionManager::refit(Live& s, engine::Priority priority) {
  const int channels = static_cast<int>(s.config.channels.size());
  // Repeats averaged per stimulus, valid trials only, in the order stimuli were first reported.
  std::map<std::string, std::pair<std::vector<double>, int>> sums;
  std::vector<std::string> order;
  for (const TrialRow& t : store_->trials(s.config.session_id)) {
    if (!t.valid) continue;
    auto [it, fresh] = sums.try_emplace(t.stimulus_id, std::vector<double>(channels, 0.0), 0);
    if (fresh) order.push_back(t.stimulus_id);
    for (int c = 0; c < channels; ++c) it->second.first[c] += t.responses[c];
    ++it->second.second;
  }
  if (static_cast<int>(order.size()) < s.config.calibration.min_stimuli) return Status::Ok();

  // Reported stimuli join the bank: their features from when they were handed out, or, after a
  // restart, recomputed from the stored images.
  std::vector<std::string> missing;
  for (const auto& id : order) {
    if (!s.row_of.count(id) && !s.pending.count(id)) missing.push_back(id);
  }
  if (!missing.empty()) {
    std::map<std::string, std::string> sha_of;
    for (const auto& st : store_->stimuli(s.config.session_id)) {
      sha_of[st.stimulus_id] = st.image_sha256;
    }
    std::vector<std::vector<std::uint8_t>> images;
    for (const auto& id : missing) {
      ASSIGN_OR_RETURN(auto png, store_->get_image(sha_of[id]));
      ASSIGN_OR_RETURN(Rgb8Image img, decode_image(png));
      images.push_back(std::move(img.pixels));
    }
    std::vector<const std::uint8_t*> pixels;
    for (const auto& img : images) pixels.push_back(img.data());
    RETURN_IF_ERROR(add_features(s, missing, pixels, priority, std::nullopt));
  }
  for (const auto& id : order) {
    auto it = s.pending.find(id);
    if (it == s.pending.end()) continue;
    ASSIGN_OR_RETURN(int row, s.bank->add(it->second));
    s.row_of[id] = row;
    s.pending.erase(it);
  }

  std::vector<int> rows;
  std::vector<double> targets;
  for (const auto& id : order) {
    rows.push_back(s.row_of.at(id));
    const auto& [sum, count] = sums.at(id);
    for (int c = 0; c < channels; ++c) targets.push_back(sum[c] / count);
  }
  CalibrationOptions options;
  options.form = s.config.calibration.form;
  options.folds = s.config.calibration.folds;
  ASSIGN_OR_RETURN(auto fits, s.bank->fit(rows, targets, channels, options));

  // Install every channel's model first, then publish the new state: a failure leaves the
  // previous fit in place everywhere.
  const int version = s.calibration.version + 1;
  std::vector<FitRow> history;
  for (int c = 0; c < channels; ++c) {
    const ChannelSpec& ch = s.config.channels[c];
    const std::string model_id = channel_model_id(s.config.session_id, ch.id);
    char description[256];
    std::snprintf(description, sizeof description,
                  "session %s channel %s: %s readout (cv r %.3f, %d stimuli, fit %d)",
                  s.config.session_id.c_str(), ch.id.c_str(), to_string(fits[c].form), fits[c].cv_r,
                  fits[c].images, version);
    auto model = calibrated_model(*s.base->model, s.base->features, fits[c], model_id, description);
    RETURN_IF_ERROR(install(model, s.config.session_id, priority));
    nlohmann::json summary = {{"form", to_string(fits[c].form)},
                              {"lambda", fits[c].lambda},
                              {"cv_r", fits[c].cv_r},
                              {"stimuli", fits[c].images},
                              {"model_id", model_id},
                              {"sha256", model->info.sha256}};
    history.push_back(FitRow{version, ch.id, summary.dump(), 0});
  }
  {
    char description[256];
    std::snprintf(description, sizeof description,
                  "session %s: every channel's %s readout, one output per channel (fit %d)",
                  s.config.session_id.c_str(), to_string(fits.front().form), version);
    auto model =
        session_model(*s.base->model, s.base->features, fits, s.config.session_id, description);
    RETURN_IF_ERROR(install(model, s.config.session_id, priority));
  }
  for (int c = 0; c < channels; ++c) {
    ChannelCalibration& cal = s.calibration.channels[c];
    cal.agreement_with_previous = s.fits[c] ? fit_agreement(*s.fits[c], fits[c], *s.bank) : 1.0;
    cal.calibrated = true;
    cal.model_id = channel_model_id(s.config.session_id, s.config.channels[c].id);
    cal.cv_r = fits[c].cv_r;
    cal.lambda = fits[c].lambda;
    cal.stimuli = fits[c].images;
    s.fits[c] = std::move(fits[c]);
  }
  s.calibration.version = version;
  s.calibration.model_id = s.config.session_id;
  return store_->add_fits(s.config.session_id, history);
}

Status SessionManager::rebuild(Live& s, engine::Priority priority) {
  if (s.rebuilt) return Status::Ok();
  for (const StimulusRow& st : store_->stimuli(s.config.session_id)) {
    if (st.origin != "synthesized") {
      const auto j = nlohmann::json::parse(st.source_json, nullptr, false);
      if (j.is_object() && j.contains("pool_image")) s.shown_pool.insert(j["pool_image"]);
    }
  }
  // Continue the fit count where the stored history ends: the refit after a restart is a new
  // version (the trials may have moved on since the last stored fit), so versions never repeat.
  for (const FitRow& f : store_->fits(s.config.session_id)) {
    s.calibration.version = std::max(s.calibration.version, f.version);
  }
  RETURN_IF_ERROR(refit(s, priority));
  s.rebuilt = true;
  return Status::Ok();
}

void SessionManager::resume() {
  for (const SessionRow& row : store_->list_sessions()) {
    if (row.closed) continue;
    auto s = live(row.id);
    Status st = s.ok() ? Status::Ok() : s.status();
    if (s.ok()) {
      std::lock_guard lock((*s)->mutex);
      st = rebuild(**s, engine::Priority::kInteractive);
    }
    if (st.ok()) {
      spdlog::info("event=session_resumed session={} trials={}", row.id, row.trials);
    } else {
      spdlog::warn("event=session_resume_failed session={} error=\"{}\"", row.id, st.message());
    }
  }
}

SessionStatus SessionManager::status_of(Live& s) {
  SessionStatus st;
  st.config = s.config;
  auto row = store_->get_session(s.config.session_id);
  if (row.ok()) st.row = *row;
  st.pool_images = s.pool ? static_cast<int>(s.pool->images.size()) : 0;
  st.calibration = s.calibration;
  return st;
}

StatusOr<SessionStatus> SessionManager::open(SessionConfig config) {
  RETURN_IF_ERROR(validate(config));
  // The session's own model takes the session id: it must not be a served model's id.
  if (auto clash = registry_.find(config.session_id); clash.ok()) {
    const bool own = (*clash)->model->info.source.rfind("calibrated on ", 0) == 0;
    if (!own) {
      return invalid_argument("session_id: '" + config.session_id +
                              "' is the id of a model this server serves; choose another");
    }
  }
  ASSIGN_OR_RETURN(const ImagePool* p, pool(config.pool));
  auto found = base(config.base_model);
  if (!found.ok()) return found.status().with_context("base_model");
  const std::shared_ptr<Base> b = *found;
  const ModelInfo& info = b->model->info;
  const Rgb8Image& first = p->images.front().image;
  if (first.height != info.in_h || first.width != info.in_w) {
    return invalid_argument("pool: images of '" + p->name + "' are " + std::to_string(first.width) +
                            "x" + std::to_string(first.height) + "; base_model '" + info.id +
                            "' takes " + std::to_string(info.in_w) + "x" +
                            std::to_string(info.in_h));
  }
  RETURN_IF_ERROR(store_->create_session(config.session_id, to_json(config).dump()).status());
  ASSIGN_OR_RETURN(auto s, live(config.session_id));
  std::lock_guard lock(s->mutex);
  RETURN_IF_ERROR(rebuild(*s, engine::Priority::kInteractive));
  return status_of(*s);
}

StatusOr<SessionStatus> SessionManager::get(const std::string& session_id) {
  ASSIGN_OR_RETURN(auto s, live(session_id));
  std::lock_guard lock(s->mutex);
  return status_of(*s);
}

std::vector<SessionStatus> SessionManager::list() {
  std::vector<SessionStatus> out;
  for (const SessionRow& row : store_->list_sessions()) {
    auto st = get(row.id);
    if (st.ok()) out.push_back(std::move(*st));
  }
  return out;
}

StatusOr<SessionStatus> SessionManager::close(const std::string& session_id) {
  ASSIGN_OR_RETURN(auto s, live(session_id));
  std::lock_guard lock(s->mutex);
  RETURN_IF_ERROR(store_->close_session(session_id).status());
  s->prepared.clear();  // abandons them
  s->prepared_request.reset();
  return status_of(*s);
}

StatusOr<ExportSummary> SessionManager::export_session(const std::string& session_id) {
  ASSIGN_OR_RETURN(auto s, live(session_id));
  std::lock_guard lock(s->mutex);
  ExportInput input;
  input.config = s->config;
  ASSIGN_OR_RETURN(input.row, store_->get_session(session_id));
  input.stimuli = store_->stimuli(session_id);
  input.trials = store_->trials(session_id);
  input.fits = store_->fits(session_id);
  nlohmann::json calibration = {{"version", s->calibration.version},
                                {"form", to_string(s->calibration.form)},
                                {"model_id", s->calibration.model_id}};
  for (const auto& c : s->calibration.channels) {
    calibration["channels"].push_back({{"channel_id", c.channel_id},
                                       {"calibrated", c.calibrated},
                                       {"model_id", c.model_id},
                                       {"cv_r", c.cv_r},
                                       {"lambda", c.lambda},
                                       {"stimuli", c.stimuli}});
    if (!c.calibrated) continue;
    ASSIGN_OR_RETURN(auto model, registry_.find(c.model_id));
    input.channel_models.emplace_back(c.channel_id, model->model);
  }
  input.calibration_json = calibration.dump();
  input.image = [this](const std::string& sha) { return store_->get_image(sha); };
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const std::string exports = options_.data_dir + "/exports";
  std::error_code ec;
  std::filesystem::create_directories(exports, ec);
  if (ec) {
    return Status(StatusCode::kPermissionDenied, "cannot create " + exports + ": " + ec.message());
  }
  return sessions::export_session(input, exports + "/" + session_id + "-" + std::to_string(now_ms));
}

StatusOr<ReportResult> SessionManager::report(const std::string& session_id,
                                              std::vector<TrialRow> trials,
                                              engine::Priority priority) {
  ASSIGN_OR_RETURN(auto s, live(session_id));
  std::lock_guard lock(s->mutex);
  RETURN_IF_ERROR(rebuild(*s, priority));
  if (trials.empty()) return invalid_argument("trials: at least one trial is required");
  if (static_cast<int>(trials.size()) > kMaxTrialsPerReport) {
    return invalid_argument("trials: " + std::to_string(trials.size()) + " trials; at most " +
                            std::to_string(kMaxTrialsPerReport) + " per report");
  }
  ReportResult result;
  ASSIGN_OR_RETURN(
      result.outcome,
      store_->add_trials(session_id, static_cast<int>(s->config.channels.size()), trials));
  // The trials are on disk: from here a failure to refit leaves the previous fit serving, and
  // the next report (or a restart) fits again.
  if (result.outcome.stored > 0) {
    if (Status st = refit(*s, priority); !st.ok()) {
      spdlog::warn("event=refit_failed session={} error=\"{}\"", session_id, st.message());
    } else {
      result.prepared_invalidated = revalidate_prepared(*s);
    }
  }
  ASSIGN_OR_RETURN(SessionRow row, store_->get_session(session_id));
  result.total_trials = row.trials;
  result.calibration = s->calibration;
  return result;
}

StatusOr<BlockResult> SessionManager::next_block(const BlockRequest& request) {
  ASSIGN_OR_RETURN(auto s, live(request.session_id));
  std::lock_guard lock(s->mutex);
  RETURN_IF_ERROR(rebuild(*s, request.priority));
  if (!request.block_id.empty()) {
    RETURN_IF_ERROR(check_id(request.block_id, "block_id"));
    ASSIGN_OR_RETURN(auto stored, store_->find_block(request.session_id, request.block_id));
    if (stored) {
      BlockResult r;
      r.block_id = stored->block_id;
      r.block_index = stored->block_index;
      r.replayed = true;
      for (StimulusRow& row : stored->stimuli) {
        ASSIGN_OR_RETURN(auto png, store_->get_image(row.image_sha256));
        r.stimuli.push_back(BlockStimulus{std::move(row), std::move(png)});
      }
      r.calibration_version = s->calibration.version;
      return r;
    }
  }
  ASSIGN_OR_RETURN(SessionRow row, store_->get_session(request.session_id));
  if (row.closed) {
    return failed_precondition("session '" + request.session_id + "' is closed");
  }
  BlockContext ctx{.pool = *s->pool,
                   .shown_pool = s->shown_pool,
                   .request = request,
                   .block_index = row.blocks,
                   .registry = registry_,
                   .engine = engine_,
                   .session_model = s->calibration.model_id,
                   .fit_version = s->calibration.version};

  for (const auto& ch : s->config.channels) ctx.channel_ids.push_back(ch.id);
  Live& live_session = *s;
  // Prepared batches not taken by this block assumed another request: dropped (and abandoned)
  // once the block is made.
  ctx.take_prepared = [&live_session, index = row.blocks](const SynthesisPlan& plan) {
    std::unique_ptr<SynthesisBatch> taken;
    if (live_session.prepared_block_index != index) return taken;
    const std::string key = plan.key();
    auto& batches = live_session.prepared;
    for (auto it = batches.begin(); it != batches.end(); ++it) {
      if ((*it)->plan().key() == key) {
        taken = std::move(*it);
        batches.erase(it);
        break;
      }
    }
    return taken;
  };
  ctx.pool_predictions = [this, &live_session] { return pool_predictions(live_session); };
  ctx.committee_predictions = [this, &live_session](int members) {
    return committee_predictions(live_session, members);
  };
  ctx.shown_predictions = [this, &live_session] {
    std::vector<float> shown;
    for (int row = 0; row < live_session.bank->images(); ++row) {
      for (double v : predict_channels(live_session, live_session.bank->row(row))) {
        shown.push_back(static_cast<float>(v));
      }
    }
    return shown;
  };
  // Pool items still need a feature pass after the syntheses end (unless the pool's features are
  // cached by then).
  int pool_items = static_cast<int>(request.references.size());
  for (const auto& share : request.shares) {
    if (share.kind == StrategyKind::kPool) pool_items += share.count;
  }
  // So do prepared stimuli made on an older fit: their predictions come from the current one.
  for (const auto& batch : s->prepared) {
    if (batch->fit_version() != s->calibration.version) {
      pool_items += static_cast<int>(batch->plan().requests.size());
    }
  }
  ctx.step_times = step_times_;
  ctx.reserve = std::chrono::milliseconds(static_cast<int>(
      5 + 1.5 * finishing_ms_.load() + 1.5 * feature_ms_per_image_.load() * pool_items));
  auto made = make_block_items(ctx);
  s->prepared.clear();
  s->prepared_request.reset();
  s->prepared_block_index = -1;
  RETURN_IF_ERROR(made.status());
  std::vector<BlockItem> items = std::move(*made);
  const auto items_made = engine::Clock::now();

  BlockResult result;
  result.block_index = row.blocks;
  char generated[32];
  std::snprintf(generated, sizeof generated, "block%04d", row.blocks);
  result.block_id = request.block_id.empty() ? generated : request.block_id;
  result.calibration_version = s->calibration.version;
  for (std::size_t c = 0; c < s->fits.size(); ++c) {
    if (!s->fits[c]) result.uncalibrated_channels.push_back(s->config.channels[c].id);
  }
  for (auto& item : items) {
    if (item.stopped_early) result.stop_reason = "DEADLINE";
    if (!item.prepared) continue;
    ++result.prepared_stimuli;
    if (item.prepared_fit_version != s->calibration.version) item.predicted.clear();
  }

  // Pool images are predicted from their features; a synthesized stimulus comes with every
  // channel's prediction already, and its features wait for its report (refit() adds them), so
  // a deadline-bound block spends no time on them.
  std::vector<std::string> ids, feature_ids;
  std::vector<const std::uint8_t*> pixels;
  const std::size_t p = static_cast<std::size_t>(s->base->features.shape.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    ids.push_back(result.block_id + "-" + std::to_string(i));
    if (!items[i].predicted.empty()) continue;
    const float* cached =
        items[i].pool_index >= 0 ? s->pool_cache->row(items[i].pool_index, p) : nullptr;
    if (cached != nullptr) {
      s->pending[ids.back()].assign(cached, cached + p);
    } else {
      feature_ids.push_back(ids.back());
      pixels.push_back(items[i].pixels.data());
    }
  }
  RETURN_IF_ERROR(add_features(*s, feature_ids, pixels, request.priority, std::nullopt));

  BlockRow block;
  block.block_id = result.block_id;
  block.strategy_json = items.empty() ? "{}" : ctx.strategy_json;
  for (std::size_t i = 0; i < items.size(); ++i) {
    StimulusRow st;
    st.stimulus_id = ids[i];
    st.position = static_cast<int>(i);
    st.origin = items[i].origin;
    st.source_json = items[i].source_json;
    ASSIGN_OR_RETURN(st.image_sha256, store_->put_image(items[i].png));
    st.predicted = items[i].predicted.empty() ? predict_channels(*s, s->pending.at(ids[i]))
                                              : items[i].predicted;
    block.stimuli.push_back(st);
    result.stimuli.push_back(BlockStimulus{std::move(st), std::move(items[i].png)});
  }
  ASSIGN_OR_RETURN(result.block_index, store_->add_block(request.session_id, block));
  const double finishing_ms =
      std::chrono::duration<double, std::milli>(engine::Clock::now() - items_made).count();
  finishing_ms_.store(0.7 * finishing_ms_.load() + 0.3 * finishing_ms);
  for (auto& st : result.stimuli) {
    st.row.block_index = result.block_index;
    if (!items.empty()) {
      const auto j = nlohmann::json::parse(st.row.source_json, nullptr, false);
      if (j.is_object() && j.contains("pool_image")) s->shown_pool.insert(j["pool_image"]);
    }
  }
  if (request.prepare_next) prepare_next(*s, request, result.block_index + 1);
  return result;
}

// Enough prepared jobs queued at once to keep the engine busy between trials; more would crowd
// interactive clients out of their queue's slots.
constexpr int kMaxQueuedForPreparing = 16;

void SessionManager::prepare_next(Live& s, const BlockRequest& request, int block_index) {
  const auto shares = synthesis_shares(request);
  if (shares.empty() || s.calibration.model_id.empty()) return;
  const engine::Priority priority =
      std::max(request.priority, engine::Priority::kInteractive);  // larger: less urgent
  int queued = engine_.queue_depths()[static_cast<int>(priority)];
  auto model = registry_.find(s.calibration.model_id);
  if (!model.ok()) return;
  BatchTarget target{*model, s.calibration.model_id, s.calibration.version, {}};
  for (const auto& ch : s.config.channels) target.channel_ids.push_back(ch.id);
  const std::uint64_t seed =
      request.seed != 0 ? request.seed : derived_block_seed(request.session_id, block_index);
  std::vector<std::unique_ptr<SynthesisBatch>> batches;
  for (const auto& [first, count] : shares) {
    if (queued + count > kMaxQueuedForPreparing) break;
    auto plan = plan_syntheses(request, block_index, first, count, seed,
                               static_cast<int>(target.channel_ids.size()));
    if (!plan.ok()) return;
    auto batch = SynthesisBatch::start(std::move(*plan), target, priority, std::nullopt, engine_,
                                       registry_.backend(), step_times_,
                                       session_request_id(request.session_id, "prepare"));
    if (!batch.ok()) break;  // a full queue: what was started still helps
    queued += count;
    batches.push_back(std::move(*batch));
  }
  s.prepared = std::move(batches);
  s.prepared_fits = s.fits;
  s.prepared_request = request;
  s.prepared_block_index = block_index;
}

int SessionManager::revalidate_prepared(Live& s) {
  if (s.prepared.empty() || !s.prepared_request) return 0;
  // Against the fits the batches started on, not the previous refit: small steps add up.
  double lowest = 1.0;
  for (const auto& batch : s.prepared) {
    for (int channel : batch->plan().channels) {
      const auto& then = s.prepared_fits[channel];
      const auto& now = s.fits[channel];
      lowest = std::min(lowest, then && now ? fit_agreement(*then, *now, *s.bank) : -1.0);
    }
  }
  if (lowest >= s.config.calibration.prepared_min_agreement) return 0;
  int dropped = 0;
  for (const auto& batch : s.prepared) dropped += static_cast<int>(batch->plan().requests.size());
  spdlog::info("event=prepared_invalidated session={} stimuli={} agreement={:.4f} fit={}",
               s.config.session_id, dropped, lowest, s.calibration.version);
  const BlockRequest request = *s.prepared_request;
  const int block_index = s.prepared_block_index;
  s.prepared.clear();
  prepare_next(s, request, block_index);
  return dropped;
}

}  // namespace stimloop::sessions
