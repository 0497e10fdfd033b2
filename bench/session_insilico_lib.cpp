#include "bench/session_insilico_lib.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "client/rig_sim/virtual_neurons.h"
#include "kernels/backend.h"
#include "models/model_repository.h"
#include "models/preprocess.h"

namespace stimloop::bench::insilico {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxBlockStimuli = 256;  // sessions.proto: a block's count
constexpr int kForwardBatch = 32;      // images per local forward pass

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<double> cv_rs(const v1::CalibrationState& calibration) {
  std::vector<double> r;
  for (const auto& c : calibration.channels()) r.push_back(c.calibrated() ? c.cv_r() : 0.0);
  return r;
}

ReportStep step_from(const v1::ReportResponsesResponse& reply) {
  ReportStep step;
  step.version = reply.calibration().version();
  step.stored = reply.stored();
  step.cv_r = cv_rs(reply.calibration());
  std::vector<double> calibrated;
  for (const auto& c : reply.calibration().channels()) {
    if (c.calibrated()) calibrated.push_back(c.cv_r());
  }
  step.median_cv_r = median(calibrated);
  return step;
}

void add_trials(v1::ReportResponsesRequest& report, const std::string& stimulus_id,
                const std::vector<double>& rates, int repeats, std::uint64_t& poisson_state) {
  for (int r = 0; r < repeats; ++r) {
    auto* t = report.add_trials();
    t->set_stimulus_id(stimulus_id);
    t->set_repeat_index(r);
    for (double rate : rates) t->add_responses(rigsim::poisson(rate, poisson_state));
  }
}

}  // namespace

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(rank);
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

std::vector<int> seeded_order(int n, std::uint64_t seed) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  for (int i = n - 1; i > 0; --i) {
    std::swap(order[i], order[rng() % static_cast<std::uint64_t>(i + 1)]);
  }
  return order;
}

struct TrueNeurons::Impl {
  struct Net {
    std::shared_ptr<const Model> model;
    std::unique_ptr<ResidentNetwork> network;
  };
  std::unique_ptr<Backend> backend;
  std::vector<std::unique_ptr<ModelRepository>> repositories;
  std::vector<Net> nets;  // one per distinct model
  std::vector<NeuronSpec> specs;
  std::vector<int> net_of;  // per neuron: index into nets
};

TrueNeurons::TrueNeurons() : impl_(std::make_unique<Impl>()) {}
TrueNeurons::~TrueNeurons() = default;
int TrueNeurons::size() const { return static_cast<int>(impl_->specs.size()); }
const NeuronSpec& TrueNeurons::spec(int k) const { return impl_->specs[k]; }

double TrueNeurons::rate(int k, double output) const {
  const double gain = k < static_cast<int>(gains_.size()) ? gains_[k] : 1.0;
  return gain * std::max(0.0, output);
}

StatusOr<std::unique_ptr<TrueNeurons>> TrueNeurons::load(
    const std::vector<NeuronSpec>& specs, const std::vector<std::string>& model_dirs) {
  if (specs.empty()) return invalid_argument("no virtual neurons");
  auto t = std::unique_ptr<TrueNeurons>(new TrueNeurons());
  Impl& impl = *t->impl_;
  impl.backend = make_cpu_backend();
  for (const auto& dir : model_dirs) {
    ASSIGN_OR_RETURN(auto repo, ModelRepository::open(dir));
    impl.repositories.push_back(std::move(repo));
  }
  std::map<std::string, int> loaded;
  for (const NeuronSpec& spec : specs) {
    auto it = loaded.find(spec.model_id);
    if (it == loaded.end()) {
      ModelRepository* holder = nullptr;
      for (auto& repo : impl.repositories) {
        const auto& ids = repo->ids();
        if (std::find(ids.begin(), ids.end(), spec.model_id) != ids.end()) holder = repo.get();
      }
      if (holder == nullptr) return not_found("virtual neuron model '" + spec.model_id + "'");
      Impl::Net net;
      ASSIGN_OR_RETURN(net.model, holder->get(spec.model_id));
      ASSIGN_OR_RETURN(net.network, impl.backend->upload(net.model->network));
      impl.nets.push_back(std::move(net));
      it = loaded.emplace(spec.model_id, static_cast<int>(impl.nets.size()) - 1).first;
    }
    const ModelInfo& info = impl.nets[it->second].model->info;
    if (spec.output < 0 || spec.output >= info.num_outputs) {
      return out_of_range(spec.model_id + ":" + std::to_string(spec.output) + ": the model has " +
                          std::to_string(info.num_outputs) + " outputs");
    }
    impl.specs.push_back(spec);
    impl.net_of.push_back(it->second);
  }
  t->gains_.assign(specs.size(), 1.0);
  return t;
}

StatusOr<std::vector<double>> TrueNeurons::outputs(const std::vector<std::uint8_t>& pixels, int n,
                                                   int height, int width) {
  const Impl& impl = *impl_;
  const int neurons = size();
  const std::size_t image_bytes = static_cast<std::size_t>(height) * width * 3;
  if (pixels.size() != image_bytes * n) {
    return invalid_argument("outputs: " + std::to_string(pixels.size()) + " bytes for " +
                            std::to_string(n) + " images");
  }
  std::vector<double> out(static_cast<std::size_t>(n) * neurons);
  for (std::size_t m = 0; m < impl.nets.size(); ++m) {
    const Impl::Net& net = impl.nets[m];
    const ModelInfo& info = net.model->info;
    if (height != info.in_h || width != info.in_w) {
      return invalid_argument("images of " + std::to_string(width) + "x" + std::to_string(height) +
                              " for " + info.id + ", which takes " + std::to_string(info.in_w) +
                              "x" + std::to_string(info.in_h));
    }
    for (int first = 0; first < n; first += kForwardBatch) {
      const int count = std::min(kForwardBatch, n - first);
      const std::span<const std::uint8_t> raw(pixels.data() + image_bytes * first,
                                              image_bytes * count);
      const std::vector<float> input = recenter_rgb8(raw, net.model->channel_means);
      std::vector<float> o(static_cast<std::size_t>(count) * info.num_outputs);
      RETURN_IF_ERROR(net.network->forward(input, count, o));
      for (int k = 0; k < neurons; ++k) {
        if (impl.net_of[k] != static_cast<int>(m)) continue;
        for (int i = 0; i < count; ++i) {
          out[static_cast<std::size_t>(first + i) * neurons + k] =
              o[static_cast<std::size_t>(i) * info.num_outputs + impl.specs[k].output];
        }
      }
    }
  }
  return out;
}

StatusOr<std::vector<double>> TrueNeurons::rates(const std::vector<std::uint8_t>& pixels,
                                                 int height, int width) {
  ASSIGN_OR_RETURN(auto o, outputs(pixels, 1, height, width));
  for (int k = 0; k < size(); ++k) o[k] = rate(k, o[k]);
  return o;
}

StatusOr<v1::SessionInfo> open_session(client::StimloopClient& client, const std::string& id,
                                       const std::vector<std::string>& channel_names,
                                       const std::string& base, const std::string& pool,
                                       v1::ReadoutForm form, const std::string& notes) {
  v1::OpenSessionRequest open;
  open.set_session_id(id);
  open.set_rig("stimloop-bench-session-insilico");
  for (std::size_t k = 0; k < channel_names.size(); ++k) {
    auto* ch = open.add_channels();
    // Appended, not "ch" + ...: GCC 12 warns falsely (-Wrestrict) on that operator+.
    std::string cid = "ch";
    cid += std::to_string(k);
    ch->set_id(cid);
    ch->set_name(channel_names[k]);
  }
  open.set_base_model(base);
  open.set_pool(pool);
  open.mutable_calibration()->set_form(form);
  open.mutable_calibration()->set_min_stimuli(10);
  open.set_notes(notes);
  auto opened = client.open_session(open);
  if (!opened.ok()) return opened.status().with_context("OpenSession " + id);
  return opened;
}

StatusOr<std::vector<ReportStep>> report_pool_images(client::StimloopClient& client,
                                                     const std::string& session_id,
                                                     const std::vector<int>& images,
                                                     int report_every, const PoolTruth& truth,
                                                     int repeats, std::uint64_t& poisson_state) {
  std::vector<ReportStep> steps;
  const int total = static_cast<int>(images.size());
  const std::size_t image_bytes = static_cast<std::size_t>(truth.height) * truth.width * 3;
  report_every = std::max(1, report_every);
  for (int first = 0; first < total; first += report_every) {
    const int end = std::min(total, first + report_every);
    v1::ReportResponsesRequest report;
    report.set_session_id(session_id);
    const auto block_start = Clock::now();
    for (int chunk = first; chunk < end; chunk += kMaxBlockStimuli) {
      const int chunk_end = std::min(end, chunk + kMaxBlockStimuli);
      v1::NextBlockRequest request;
      request.set_session_id(session_id);
      request.set_count(chunk_end - chunk);
      for (int j = chunk; j < chunk_end; ++j) {
        request.mutable_strategy()->add_references(truth.names[images[j]]);
      }
      request.set_encoding(v1::RAW_RGB8);
      auto block = client.next_block(request);
      if (!block.ok()) return block.status().with_context("NextBlock (references)");
      if (block->stimuli_size() != chunk_end - chunk) {
        return internal_error("NextBlock: " + std::to_string(block->stimuli_size()) +
                              " stimuli for " + std::to_string(chunk_end - chunk) + " references");
      }
      for (int j = chunk; j < chunk_end; ++j) {
        const auto& st = block->stimuli(j - chunk);
        const int image = images[j];
        // The true rates come from the pixels decoded here: they must be the ones shown.
        const std::string& data = st.image().data();
        if (st.pool_image() != truth.names[image] || data.size() != image_bytes ||
            std::memcmp(data.data(), truth.pixels.data() + image_bytes * image, image_bytes) != 0) {
          return internal_error("NextBlock: stimulus " + st.stimulus_id() + " ('" +
                                st.pool_image() + "') is not pool image '" + truth.names[image] +
                                "' as decoded here");
        }
        std::vector<double> rates(truth.neurons);
        for (int k = 0; k < truth.neurons; ++k) rates[k] = truth.rate(image, k);
        add_trials(report, st.stimulus_id(), rates, repeats, poisson_state);
      }
    }
    const double next_block_s = seconds_since(block_start);
    const auto report_start = Clock::now();
    auto reply = client.report_responses(report);
    if (!reply.ok()) {
      return reply.status().with_context("ReportResponses of pool stimuli " +
                                         std::to_string(first) + ".." + std::to_string(end - 1));
    }
    ReportStep step = step_from(*reply);
    step.stimuli = end;
    step.next_block_s = next_block_s;
    step.report_s = seconds_since(report_start);
    steps.push_back(step);
    std::printf(
        "    %4d/%d pool stimuli reported: fit v%d, median cv r %.3f (ReportResponses %.1f s)\n",
        end, total, step.version, step.median_cv_r, step.report_s);
    std::fflush(stdout);
  }
  return steps;
}

StatusOr<SynthBlock> synthesize_block(client::StimloopClient& client, const std::string& session_id,
                                      const v1::Strategy& strategy, int count,
                                      const std::vector<std::string>& channel_ids,
                                      TrueNeurons& neurons, const PoolTruth& truth) {
  v1::NextBlockRequest request;
  request.set_session_id(session_id);
  request.set_count(count);
  *request.mutable_strategy() = strategy;
  request.set_encoding(v1::RAW_RGB8);
  const auto start = Clock::now();
  auto block = client.next_block(request);
  if (!block.ok()) return block.status().with_context("NextBlock (SYNTHESIZE)");
  SynthBlock out;
  out.wall_s = seconds_since(start);
  out.block_index = block->block_index();
  out.calibration_version = block->calibration_version();
  out.stop_reason = block->stop_reason();
  for (const auto& st : block->stimuli()) {
    if (st.origin() != v1::SYNTHESIZED) {
      return internal_error("NextBlock: stimulus " + st.stimulus_id() +
                            " of a SYNTHESIZE block is not synthesized");
    }
    SynthStimulus s;
    s.stimulus_id = st.stimulus_id();
    s.target_channel = st.target_channel();
    for (std::size_t c = 0; c < channel_ids.size(); ++c) {
      if (channel_ids[c] == s.target_channel) s.channel = static_cast<int>(c);
    }
    if (s.channel < 0) {
      return internal_error("NextBlock: stimulus " + st.stimulus_id() +
                            " has an unknown target channel '" + s.target_channel + "'");
    }
    s.pixels.assign(st.image().data().begin(), st.image().data().end());
    ASSIGN_OR_RETURN(s.true_rates,
                     neurons.rates(s.pixels, st.image().height(), st.image().width()));
    s.true_rate = s.true_rates[s.channel];
    const double best = truth.best[s.channel];
    s.ratio = best > 0 ? s.true_rate / best : 0.0;
    if (st.predicted_size() > s.channel) s.predicted = st.predicted(s.channel);
    s.predicted_ratio = best > 0 ? s.predicted / best : 0.0;
    const auto record = nlohmann::json::parse(st.record_json(), nullptr, false);
    if (record.is_object()) s.steps_done = record.value("steps_done", 0);
    out.stimuli.push_back(std::move(s));
  }
  // Channel order (the server starts the round-robin at the block's index): tables read alike.
  std::stable_sort(
      out.stimuli.begin(), out.stimuli.end(),
      [](const SynthStimulus& a, const SynthStimulus& b) { return a.channel < b.channel; });
  return out;
}

StatusOr<ReportStep> report_block(client::StimloopClient& client, const std::string& session_id,
                                  const SynthBlock& block, int repeats,
                                  std::uint64_t& poisson_state) {
  v1::ReportResponsesRequest report;
  report.set_session_id(session_id);
  for (const auto& s : block.stimuli) {
    add_trials(report, s.stimulus_id, s.true_rates, repeats, poisson_state);
  }
  const auto start = Clock::now();
  auto reply = client.report_responses(report);
  if (!reply.ok()) return reply.status().with_context("ReportResponses (synthesized)");
  ReportStep step = step_from(*reply);
  step.report_s = seconds_since(start);
  return step;
}

}  // namespace stimloop::bench::insilico
