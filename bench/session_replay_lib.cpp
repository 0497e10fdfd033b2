#include "bench/session_replay_lib.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>

#include "common/npy.h"
#include "server/sessions/calibration.h"

namespace stimloop::bench::replay {
namespace {

using Clock = std::chrono::steady_clock;

// The protocol's limits (sessions.proto, stimloop.proto).
constexpr int kMaxBlockStimuli = 256;
constexpr int kMaxPredictModels = 64;
constexpr int kPredictImages = 64;  // images per Predict: keeps one call's reply small

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A block made only of references: the server hands out exactly these pool images, in this order
// (count = number of references leaves no room for another strategy). Checked, since a mismatch
// would silently score predictions against the wrong recordings.
StatusOr<v1::Block> references_block(client::StimloopClient& client, const std::string& session_id,
                                     const std::vector<int>& images, v1::ImageEncoding encoding) {
  v1::NextBlockRequest request;
  request.set_session_id(session_id);
  request.set_count(static_cast<int>(images.size()));
  for (int i : images) request.mutable_strategy()->add_references(image_name(i));
  request.set_encoding(encoding);
  auto block = client.next_block(request);
  if (!block.ok()) return block.status().with_context("NextBlock");
  if (block->stimuli_size() != static_cast<int>(images.size())) {
    return internal_error("NextBlock: " + std::to_string(block->stimuli_size()) + " stimuli for " +
                          std::to_string(images.size()) + " references");
  }
  for (int j = 0; j < block->stimuli_size(); ++j) {
    if (block->stimuli(j).pool_image() != image_name(images[j])) {
      return internal_error("NextBlock: stimulus " + std::to_string(j) + " is '" +
                            block->stimuli(j).pool_image() + "', asked for '" +
                            image_name(images[j]) + "'");
    }
  }
  return block;
}

double median_cv_r(const v1::CalibrationState& calibration) {
  std::vector<double> r;
  for (const auto& c : calibration.channels()) {
    if (c.calibrated()) r.push_back(c.cv_r());
  }
  return median(r);
}

}  // namespace

StatusOr<SessionData> load_responses(const std::string& v4_dir, const std::string& session) {
  const std::string path = (std::filesystem::path(v4_dir) / "responses_repeat_averaged" /
                            ("responses_" + session + ".npy"))
                               .string();
  ASSIGN_OR_RETURN(NpyArray array, read_npy(path));
  if (array.shape.size() != 2) {
    return invalid_argument(path + ": expected a (neurons, images) array");
  }
  SessionData data;
  data.session = session;
  data.neurons = static_cast<int>(array.shape[0]);
  data.images = static_cast<int>(array.shape[1]);
  data.responses = array.to_double();
  for (std::size_t j = 0; j < data.responses.size(); ++j) {
    if (!std::isfinite(data.responses[j])) {
      return invalid_argument(path + ": value " + std::to_string(j) + " is not finite");
    }
  }
  return data;
}

std::string image_name(int index) {
  char name[32];
  std::snprintf(name, sizeof name, "image%04d.jpg", index + 1);
  return name;
}

Split split_images(int images, int fit, std::uint64_t seed) {
  std::vector<int> order(images);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  for (int i = images - 1; i > 0; --i) {
    std::swap(order[i], order[rng() % static_cast<std::uint64_t>(i + 1)]);
  }
  Split split;
  split.seed = seed;
  fit = std::clamp(fit, 0, images);
  split.fit.assign(order.begin(), order.begin() + fit);
  split.held_out.assign(order.begin() + fit, order.end());
  std::sort(split.held_out.begin(), split.held_out.end());
  return split;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

StatusOr<FormResult> replay_form(client::StimloopClient& client, const SessionData& data,
                                 const Split& split, const ReplayOptions& options,
                                 v1::ReadoutForm form) {
  const int n = options.neurons;
  FormResult out;
  out.form = form == v1::FACTORIZED ? "factorized" : "ridge";
  out.session_id = "replay-" + data.session + "-" + out.form;
  if (form == v1::RIDGE && options.ridge_smoothing > 0) {
    out.form += "-s" + std::to_string(options.ridge_smoothing).substr(0, 4);
    out.session_id = "replay-" + data.session + "-" + out.form;
  }
  const auto fit_start = Clock::now();

  v1::OpenSessionRequest open;
  open.set_session_id(out.session_id);
  open.set_rig("stimloop-bench-session-replay");
  for (int k = 0; k < n; ++k) {
    auto* ch = open.add_channels();
    // Appended, not "n" + ...: GCC 12 warns falsely (-Wrestrict) on that operator+.
    std::string id = "n";
    id += std::to_string(k);
    ch->set_id(id);
    ch->set_name("neuron " + std::to_string(k) + " of responses_" + data.session + ".npy");
  }
  open.set_base_model(options.base);
  open.set_pool(data.session);
  open.mutable_calibration()->set_form(form);
  open.mutable_calibration()->set_min_stimuli(10);
  if (form == v1::RIDGE) open.mutable_calibration()->set_ridge_smoothing(options.ridge_smoothing);
  open.set_notes("replay of the published repeat-averaged responses, split seed " +
                 std::to_string(split.seed));
  auto opened = client.open_session(open);
  if (!opened.ok()) return opened.status().with_context("OpenSession");
  if (opened->pool_images() != data.images) {
    return invalid_argument("pool '" + data.session + "' has " +
                            std::to_string(opened->pool_images()) + " images, the responses " +
                            std::to_string(data.images));
  }

  // Fit phase: each report (one trial per stimulus, the repeat-averaged rates) is one refit.
  const int fit_count = static_cast<int>(split.fit.size());
  const int block = std::max(1, options.block);
  for (int first = 0; first < fit_count; first += block) {
    const int end = std::min(fit_count, first + block);
    ReportStep step;
    v1::ReportResponsesRequest report;
    report.set_session_id(out.session_id);
    const auto block_start = Clock::now();
    for (int chunk = first; chunk < end; chunk += kMaxBlockStimuli) {
      const std::vector<int> images(split.fit.begin() + chunk,
                                    split.fit.begin() + std::min(end, chunk + kMaxBlockStimuli));
      ASSIGN_OR_RETURN(auto given, references_block(client, out.session_id, images, v1::PNG));
      for (int j = 0; j < given.stimuli_size(); ++j) {
        auto* trial = report.add_trials();
        trial->set_stimulus_id(given.stimuli(j).stimulus_id());
        trial->set_repeat_index(0);
        for (int k = 0; k < n; ++k) {
          double v = data.at(k, images[j]);
          if (v < 0.0) {  // the protocol takes rates >= 0
            ++out.clamped;
            out.most_negative = std::min(out.most_negative, v);
            v = 0.0;
          }
          trial->add_responses(v);
        }
      }
    }
    step.next_block_s = seconds_since(block_start);
    const auto report_start = Clock::now();
    auto reported = client.report_responses(report);
    if (!reported.ok()) {
      return reported.status().with_context("ReportResponses of stimuli " + std::to_string(first) +
                                            ".." + std::to_string(end - 1));
    }
    step.report_s = seconds_since(report_start);
    step.stimuli = end;
    step.version = reported->calibration().version();
    step.median_cv_r = median_cv_r(reported->calibration());
    out.reports.push_back(step);
    std::printf(
        "  %s %-10s %4d/%d stimuli reported: fit v%d, median cv r %.3f (NextBlock %.1f s, "
        "ReportResponses %.1f s)\n",
        data.session.c_str(), out.form.c_str(), end, fit_count, step.version, step.median_cv_r,
        step.next_block_s, step.report_s);
    std::fflush(stdout);
  }
  out.fit_s = seconds_since(fit_start);

  // Held-out phase: the final fit's `predicted` for every held-out image.
  const auto held_start = Clock::now();
  const int m = static_cast<int>(split.held_out.size());
  std::vector<std::vector<double>> predicted(n);
  for (int chunk = 0; chunk < m; chunk += kMaxBlockStimuli) {
    const std::vector<int> images(split.held_out.begin() + chunk,
                                  split.held_out.begin() + std::min(m, chunk + kMaxBlockStimuli));
    ASSIGN_OR_RETURN(auto given, references_block(client, out.session_id, images, v1::RAW_RGB8));
    if (given.uncalibrated_channels_size() > 0) {
      return internal_error("NextBlock: " + std::to_string(given.uncalibrated_channels_size()) +
                            " channels still uncalibrated after every fit image");
    }
    for (const auto& st : given.stimuli()) {
      if (st.predicted_size() != n) {
        return internal_error("NextBlock: stimulus " + st.stimulus_id() + " has " +
                              std::to_string(st.predicted_size()) + " predictions for " +
                              std::to_string(n) + " channels");
      }
      for (int k = 0; k < n; ++k) predicted[k].push_back(st.predicted(k));
      out.held_out_pixels.push_back(st.image().data());
      out.height = st.image().height();
      out.width = st.image().width();
    }
  }
  out.held_out_s = seconds_since(held_start);
  for (int k = 0; k < n; ++k) {
    std::vector<double> recorded;
    for (int i : split.held_out) recorded.push_back(data.at(k, i));
    out.r.push_back(sessions::pearson_r(predicted[k], recorded));
  }

  auto info = client.get_session(out.session_id);
  if (!info.ok()) return info.status().with_context("GetSession");
  out.calibration_version = info->calibration().version();
  for (const auto& c : info->calibration().channels()) {
    out.cv_r.push_back(c.cv_r());
    out.lambda.push_back(c.lambda());
  }
  // Closing frees nothing on the server (the calibrated models stay), but says the replay ended.
  if (auto closed = client.close_session(out.session_id); !closed.ok()) {
    return closed.status().with_context("CloseSession");
  }
  return out;
}

StatusOr<std::vector<double>> compact_r(client::StimloopClient& client, const SessionData& data,
                                        const Split& split, int neurons, const FormResult& images,
                                        double* seconds) {
  const auto start = Clock::now();
  const int m = static_cast<int>(split.held_out.size());
  if (static_cast<int>(images.held_out_pixels.size()) != m) {
    return internal_error("compact models: " + std::to_string(images.held_out_pixels.size()) +
                          " held-out images for " + std::to_string(m));
  }
  std::vector<std::vector<double>> predicted(neurons, std::vector<double>(m));
  for (int k0 = 0; k0 < neurons; k0 += kMaxPredictModels) {
    const int k1 = std::min(neurons, k0 + kMaxPredictModels);
    for (int i0 = 0; i0 < m; i0 += kPredictImages) {
      const int i1 = std::min(m, i0 + kPredictImages);
      v1::PredictRequest request;
      for (int k = k0; k < k1; ++k) {
        request.add_model_ids("compact_model_" + data.session + "_neuron" + std::to_string(k));
      }
      for (int i = i0; i < i1; ++i) {
        auto* image = request.add_images();
        image->set_encoding(v1::RAW_RGB8);
        image->set_height(images.height);
        image->set_width(images.width);
        image->set_data(images.held_out_pixels[i]);
      }
      auto reply = client.predict(request);
      if (!reply.ok()) return reply.status().with_context("Predict (compact models)");
      if (reply->results_size() != k1 - k0) {
        return internal_error("Predict: " + std::to_string(reply->results_size()) +
                              " results for " + std::to_string(k1 - k0) + " models");
      }
      for (int k = k0; k < k1; ++k) {
        const auto& result = reply->results(k - k0);
        const int outputs = result.num_outputs();
        if (outputs < 1 || result.responses_size() != outputs * (i1 - i0)) {
          return internal_error("Predict: " + result.model_id() + " answered " +
                                std::to_string(result.responses_size()) + " values");
        }
        for (int i = i0; i < i1; ++i) predicted[k][i] = result.responses((i - i0) * outputs);
      }
    }
  }
  std::vector<double> r;
  for (int k = 0; k < neurons; ++k) {
    std::vector<double> recorded;
    for (int i : split.held_out) recorded.push_back(data.at(k, i));
    r.push_back(sessions::pearson_r(predicted[k], recorded));
  }
  *seconds = seconds_since(start);
  return r;
}

}  // namespace stimloop::bench::replay
