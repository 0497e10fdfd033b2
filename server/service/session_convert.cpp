#include "server/service/session_convert.h"

#include <cmath>

#include "common/image_io.h"
#include "server/service/convert.h"

namespace stimloop::service {
namespace {

sessions::ReadoutForm to_form(v1::ReadoutForm form) {
  return form == v1::FACTORIZED ? sessions::ReadoutForm::kFactorized
                                : sessions::ReadoutForm::kRidge;
}

StatusOr<sessions::StrategyKind> to_kind(v1::StrategyKind kind, const std::string& field) {
  switch (kind) {
    case v1::STRATEGY_KIND_UNSPECIFIED:
    case v1::POOL:
      return sessions::StrategyKind::kPool;
    case v1::SYNTHESIZE:
      return sessions::StrategyKind::kSynthesize;
    case v1::ADEPT:
      return sessions::StrategyKind::kAdept;
    case v1::COMMITTEE:
      return sessions::StrategyKind::kCommittee;
    default:
      return invalid_argument(field + ": unknown strategy " + std::to_string(kind));
  }
}

}  // namespace

StatusOr<sessions::SessionConfig> to_session_config(const v1::OpenSessionRequest& r) {
  sessions::SessionConfig c;
  c.session_id = r.session_id();
  c.rig = r.rig();
  for (const auto& ch : r.channels()) c.channels.push_back({ch.id(), ch.name()});
  c.base_model = r.base_model();
  c.pool = r.pool();
  if (r.calibration().form() != v1::READOUT_FORM_UNSPECIFIED &&
      r.calibration().form() != v1::RIDGE && r.calibration().form() != v1::FACTORIZED) {
    return invalid_argument("calibration.form: unknown value " +
                            std::to_string(r.calibration().form()));
  }
  c.calibration.form = to_form(r.calibration().form());
  c.calibration.folds = r.calibration().folds();
  c.calibration.min_stimuli = r.calibration().min_stimuli();
  c.calibration.prepared_min_agreement = r.calibration().prepared_min_agreement();
  c.calibration.ridge_smoothing = r.calibration().ridge_smoothing();
  c.notes = r.notes();
  RETURN_IF_ERROR(sessions::validate(c));
  return c;
}

StatusOr<sessions::BlockRequest> to_block_request(const v1::NextBlockRequest& r,
                                                  const grpc::ServerContextBase& context) {
  sessions::BlockRequest b;
  b.session_id = r.session_id();
  b.count = r.count();
  if (b.count < 1 || b.count > sessions::kMaxBlockStimuli) {
    return invalid_argument("count: " + std::to_string(b.count) + " is outside 1.." +
                            std::to_string(sessions::kMaxBlockStimuli));
  }
  const v1::Strategy& s = r.strategy();
  const int references = s.references_size();
  if (s.mix_size() > 0) {
    for (int i = 0; i < s.mix_size(); ++i) {
      const std::string field = "strategy.mix[" + std::to_string(i) + "]";
      ASSIGN_OR_RETURN(auto kind, to_kind(s.mix(i).kind(), field + ".kind"));
      b.shares.push_back({kind, s.mix(i).count()});
    }
  } else if (r.count() > references) {
    ASSIGN_OR_RETURN(auto kind, to_kind(s.kind(), "strategy.kind"));
    b.shares.push_back({kind, r.count() - references});
  }
  for (const auto& name : s.references()) b.references.push_back(name);
  switch (s.objective()) {
    case v1::OBJECTIVE_UNSPECIFIED:
    case v1::MAX:
      b.objective = synthesis::ObjectiveKind::kMax;
      break;
    case v1::MIN:
      b.objective = synthesis::ObjectiveKind::kMin;
      break;
    default:
      return invalid_argument("strategy.objective: SYNTHESIZE blocks take MAX or MIN");
  }
  switch (s.method()) {
    case v1::METHOD_UNSPECIFIED:
      break;
    case v1::COWLEY2026:
      b.method = synthesis::MethodKind::kCowley2026;
      break;
    case v1::ADAM:
      b.method = synthesis::MethodKind::kAdam;
      break;
    default:
      return invalid_argument("strategy.method: SYNTHESIZE blocks take COWLEY2026 or ADAM");
  }
  if (s.steps() < 0 || s.steps() > synthesis::kMaxSteps) {
    return invalid_argument("strategy.steps: " + std::to_string(s.steps()) + " is outside 0.." +
                            std::to_string(synthesis::kMaxSteps));
  }
  b.steps = s.steps();
  b.seed = s.seed();
  if (r.priority() == v1::PRIORITY_UNSPECIFIED) {
    b.priority = engine::Priority::kRig;
  } else {
    ASSIGN_OR_RETURN(b.priority, to_priority(r.priority()));
  }
  ASSIGN_OR_RETURN(b.deadline, request_deadline(context, r.deadline_ms()));
  b.block_id = r.block_id();
  b.prepare_next = !r.no_prepare_next();
  if (r.encoding() != v1::IMAGE_ENCODING_UNSPECIFIED && r.encoding() != v1::RAW_RGB8 &&
      r.encoding() != v1::PNG) {
    return invalid_argument("encoding must be RAW_RGB8 or PNG");
  }
  return b;
}

StatusOr<std::vector<sessions::TrialRow>> to_trials(const v1::ReportResponsesRequest& r) {
  if (r.trials_size() == 0) return invalid_argument("trials: at least one trial is required");
  if (r.trials_size() > sessions::kMaxTrialsPerReport) {
    return invalid_argument("trials: " + std::to_string(r.trials_size()) + " trials; at most " +
                            std::to_string(sessions::kMaxTrialsPerReport) + " per report");
  }
  std::vector<sessions::TrialRow> trials;
  for (int i = 0; i < r.trials_size(); ++i) {
    const v1::Trial& t = r.trials(i);
    const std::string field = "trials[" + std::to_string(i) + "]";
    RETURN_IF_ERROR(sessions::check_id(t.stimulus_id(), field + ".stimulus_id"));
    if (t.repeat_index() < 0 || t.repeat_index() > 100000) {
      return invalid_argument(field + ".repeat_index: " + std::to_string(t.repeat_index()) +
                              " is outside 0..100000");
    }
    sessions::TrialRow row;
    row.stimulus_id = t.stimulus_id();
    row.repeat_index = t.repeat_index();
    row.valid = !t.aborted();
    for (int k = 0; k < t.responses_size(); ++k) {
      const double v = t.responses(k);
      if (!std::isfinite(v) || v < 0) {
        return invalid_argument(field + ".responses[" + std::to_string(k) +
                                "]: must be finite and >= 0 (a spike count or rate)");
      }
      row.responses.push_back(v);
    }
    trials.push_back(std::move(row));
  }
  return trials;
}

void fill_calibration(const sessions::CalibrationState& state, v1::CalibrationState* out) {
  out->set_version(state.version);
  out->set_model_id(state.model_id);
  out->set_form(state.form == sessions::ReadoutForm::kFactorized ? v1::FACTORIZED : v1::RIDGE);
  for (const auto& c : state.channels) {
    auto* ch = out->add_channels();
    ch->set_channel_id(c.channel_id);
    ch->set_calibrated(c.calibrated);
    ch->set_model_id(c.model_id);
    ch->set_cv_r(c.cv_r);
    ch->set_lambda(c.lambda);
    ch->set_agreement_with_previous(c.agreement_with_previous);
    ch->set_stimuli(c.stimuli);
  }
}

void fill_session_info(const sessions::SessionStatus& s, v1::SessionInfo* out) {
  out->set_session_id(s.config.session_id);
  out->set_state(s.row.closed ? v1::CLOSED : v1::OPEN);
  out->set_rig(s.config.rig);
  for (const auto& ch : s.config.channels) {
    auto* c = out->add_channels();
    c->set_id(ch.id);
    c->set_name(ch.name);
  }
  out->set_base_model(s.config.base_model);
  out->set_pool(s.config.pool);
  out->set_pool_images(s.pool_images);
  out->set_notes(s.config.notes);
  out->set_created_unix_ms(s.row.created_unix_ms);
  out->set_blocks(s.row.blocks);
  out->set_stimuli(s.row.stimuli);
  out->set_trials(s.row.trials);
  fill_calibration(s.calibration, out->mutable_calibration());
}

void fill_block(const sessions::BlockResult& block, const std::string& session_id,
                v1::ImageEncoding encoding, int height, int width, v1::Block* out) {
  out->set_session_id(session_id);
  out->set_block_id(block.block_id);
  out->set_block_index(block.block_index);
  out->set_calibration_version(block.calibration_version);
  for (const auto& ch : block.uncalibrated_channels) out->add_uncalibrated_channels(ch);
  out->set_stop_reason(block.stop_reason);
  out->set_replayed(block.replayed);
  out->set_prepared_stimuli(block.prepared_stimuli);
  for (const auto& st : block.stimuli) {
    auto* s = out->add_stimuli();
    s->set_stimulus_id(st.row.stimulus_id);
    s->set_image_sha256(st.row.image_sha256);
    const auto source = nlohmann::json::parse(st.row.source_json, nullptr, false);
    if (st.row.origin == "synthesized") {
      s->set_origin(v1::SYNTHESIZED);
      if (source.is_object() && source.contains("record")) {
        s->set_record_json(source["record"].dump());
      }
      if (source.is_object() && source.contains("channel_id")) {
        s->set_target_channel(source["channel_id"].get<std::string>());
      }
      s->set_prepared(source.is_object() && source.contains("prepared_from_fit"));
    } else {
      s->set_origin(st.row.origin == "reference" ? v1::REFERENCE : v1::POOL_IMAGE);
      if (source.is_object() && source.contains("pool_image")) {
        s->set_pool_image(source["pool_image"].get<std::string>());
      }
    }
    for (double p : st.row.predicted) s->add_predicted(p);
    if (encoding == v1::RAW_RGB8) {
      auto decoded = ::stimloop::decode_image(st.png);
      if (decoded.ok())
        encode_image(decoded->pixels, height, width, v1::RAW_RGB8, nullptr, s->mutable_image());
    } else {
      encode_image({}, height, width, v1::PNG, &st.png, s->mutable_image());
    }
  }
}

}  // namespace stimloop::service
