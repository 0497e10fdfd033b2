#include "bench/session_insilico_experiments.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "bench/session_insilico_lib.h"

namespace stimloop::bench::insilico {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string form_name(v1::ReadoutForm f) { return f == v1::FACTORIZED ? "factorized" : "ridge"; }

// Neuron -> output index of the shared models for `session`: output o is row o of
// golden/models_list.txt (golden/README.md), whose columns are index, session, neuron, ...
std::map<int, int> session_outputs(const std::string& v4, const std::string& session) {
  std::ifstream in(fs::path(v4) / "golden" / "models_list.txt");
  std::map<int, int> out;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string index, s, neuron;
    std::getline(ss, index, '\t');
    std::getline(ss, s, '\t');
    std::getline(ss, neuron, '\t');
    try {
      if (s == session) out[std::stoi(neuron)] = std::stoi(index);
    } catch (const std::exception&) {
      continue;
    }
  }
  return out;
}

// The true rates of `neurons` on every pool image, their gains set from the pool: gain =
// rate_at_p90 / the 90th percentile of max(0, output) over the pool.
StatusOr<PoolTruth> pool_truth(const sessions::ImagePool& pool, TrueNeurons& neurons,
                               double rate_at_p90, std::vector<double>* raw_out = nullptr) {
  PoolTruth t;
  t.height = pool.images.front().image.height;
  t.width = pool.images.front().image.width;
  for (const auto& img : pool.images) {
    t.names.push_back(img.name);
    t.pixels.insert(t.pixels.end(), img.image.pixels.begin(), img.image.pixels.end());
  }
  const int n = static_cast<int>(pool.images.size()), k = neurons.size();
  ASSIGN_OR_RETURN(auto raw, neurons.outputs(t.pixels, n, t.height, t.width));
  std::vector<double> gains(k);
  for (int j = 0; j < k; ++j) {
    std::vector<double> rect(n);
    double top = 0;
    for (int i = 0; i < n; ++i) {
      rect[i] = std::max(0.0, raw[std::size_t(i) * k + j]);
      top = std::max(top, rect[i]);
    }
    const double p90 = percentile(rect, 90);
    // A neuron silent on 90% of the pool is scaled by its maximum instead.
    gains[j] = rate_at_p90 / (p90 > 0 ? p90 : (top > 0 ? top : 1.0));
  }
  neurons.set_gains(gains);
  t.neurons = k;
  t.rates.resize(raw.size());
  t.best.assign(k, 0.0);
  t.best_image.assign(k, 0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < k; ++j) {
      const double r = neurons.rate(j, raw[std::size_t(i) * k + j]);
      t.rates[std::size_t(i) * k + j] = r;
      if (r > t.best[j]) {
        t.best[j] = r;
        t.best_image[j] = i;
      }
    }
  }
  if (raw_out != nullptr) *raw_out = std::move(raw);
  return t;
}

json neurons_table(const TrueNeurons& neurons, const PoolTruth& truth,
                   const std::vector<std::string>& labels) {
  const int n = static_cast<int>(truth.names.size());
  std::printf("    %-7s %-28s %8s %9s %9s %10s %14s\n", "channel", "neuron", "gain", "mean rate",
              "p90 rate", "best rate", "best image");
  json out = json::array();
  for (int k = 0; k < neurons.size(); ++k) {
    std::vector<double> col;
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      col.push_back(truth.rate(i, k));
      sum += col.back();
    }
    std::printf("    ch%-5d %-28s %8.3f %9.2f %9.2f %10.2f %14s\n", k, labels[k].c_str(),
                neurons.gains()[k], sum / n, percentile(col, 90), truth.best[k],
                truth.names[truth.best_image[k]].c_str());
    out.push_back({{"channel", "ch" + std::to_string(k)},
                   {"model", neurons.spec(k).model_id},
                   {"output", neurons.spec(k).output},
                   {"gain", neurons.gains()[k]},
                   {"mean_rate", sum / n},
                   {"best_pool_rate", truth.best[k]},
                   {"best_pool_image", truth.names[truth.best_image[k]]}});
  }
  return out;
}

json steps_json(const std::vector<ReportStep>& steps) {
  json a = json::array();
  for (const auto& s : steps) {
    a.push_back({{"stimuli", s.stimuli},
                 {"calibration_version", s.version},
                 {"median_cv_r", s.median_cv_r},
                 {"cv_r", s.cv_r},
                 {"next_block_s", s.next_block_s},
                 {"report_s", s.report_s}});
  }
  return a;
}

std::vector<double> ratios_of(const SynthBlock& b) {
  std::vector<double> r;
  for (const auto& s : b.stimuli) r.push_back(s.ratio);
  return r;
}

json block_json(const SynthBlock& b) {
  json stimuli = json::array();
  for (const auto& s : b.stimuli) {
    stimuli.push_back({{"stimulus_id", s.stimulus_id},
                       {"target_channel", s.target_channel},
                       {"true_rate", s.true_rate},
                       {"ratio", s.ratio},
                       {"predicted", s.predicted},
                       {"predicted_ratio", s.predicted_ratio},
                       {"steps_done", s.steps_done},
                       {"true_rates", s.true_rates}});
  }
  return {{"block_index", b.block_index},         {"calibration_version", b.calibration_version},
          {"stop_reason", b.stop_reason},         {"next_block_s", b.wall_s},
          {"median_ratio", median(ratios_of(b))}, {"stimuli", stimuli}};
}

v1::SynthesisSpec cowley_spec(int steps) {
  v1::SynthesisSpec spec;
  spec.set_objective(v1::MAX);
  spec.set_method(v1::COWLEY2026);
  spec.set_steps(steps);
  return spec;
}

v1::SynthesisSpec prior_spec(const Options& o) {
  v1::SynthesisSpec spec;
  spec.set_objective(v1::MAX);
  spec.set_method(v1::ADAM);
  spec.set_steps(o.prior_steps);
  spec.set_step_size(o.prior_step_size);
  spec.set_jitter(o.prior_jitter);
  spec.set_gradient_blur_sigma(o.prior_blur);
  spec.set_tv_weight(o.prior_tv);
  return spec;
}

// A SYNTHESIZE strategy with a full SynthesisSpec (the server sets output_index, seed, count).
v1::Strategy synthesize_strategy(const v1::SynthesisSpec& spec, std::uint64_t seed) {
  v1::Strategy s;
  s.set_kind(v1::SYNTHESIZE);
  s.set_seed(seed);
  *s.mutable_synthesis() = spec;
  return s;
}

std::string describe_prior(const Options& o) {
  char text[200];
  std::snprintf(text, sizeof text,
                "adam %d steps, step size %g, jitter %d, gradient blur %g, tv %g", o.prior_steps,
                o.prior_step_size > 0 ? o.prior_step_size : 2.0, o.prior_jitter, o.prior_blur,
                o.prior_tv);
  return text;
}

void print_block(const SynthBlock& b, const std::vector<std::string>& labels,
                 const PoolTruth& truth) {
  std::printf("    %-7s %-28s %9s %9s %7s %9s %7s %6s\n", "channel", "neuron", "true", "best pool",
              "ratio", "predicted", "pred/bp", "steps");
  for (const auto& s : b.stimuli) {
    std::printf("    %-7s %-28s %9.2f %9.2f %7.2f %9.2f %7.2f %6d\n", s.target_channel.c_str(),
                labels[s.channel].c_str(), s.true_rate, truth.best[s.channel], s.ratio, s.predicted,
                s.predicted_ratio, s.steps_done);
  }
}

std::string summary_line(const char* experiment, const std::string& what,
                         const std::vector<double>& ratios, double seconds) {
  char line[300];
  std::snprintf(line, sizeof line, "%-4s %-46s %6.2f %6.2f %6.2f %8.0f", experiment, what.c_str(),
                median(ratios), percentile(ratios, 0), percentile(ratios, 100), seconds);
  return line;
}

// One stimulus from the Synthesize RPC (outside any session), scored on the true neuron `k`.
StatusOr<double> synthesize_direct(client::StimloopClient& client, const std::string& model_id,
                                   v1::SynthesisSpec spec, int output, std::uint64_t seed,
                                   TrueNeurons& neurons, const PoolTruth& truth, int k) {
  v1::SynthesizeRequest request;
  request.set_model_id(model_id);
  spec.set_output_index(output);
  spec.set_seed(seed);
  spec.set_count(1);
  *request.mutable_spec() = spec;
  request.set_result_encoding(v1::RAW_RGB8);
  request.set_progress_every(1000000);
  std::string pixels;
  int h = 0, w = 0;
  const Status st = client.synthesize(request, [&](const v1::SynthesisEvent& e) {
    if (e.kind() != v1::SynthesisEvent::STIMULUS) return;
    pixels = e.stimulus().image().data();
    h = e.stimulus().image().height();
    w = e.stimulus().image().width();
  });
  if (!st.ok()) return st.with_context("Synthesize on " + model_id);
  if (pixels.empty()) return internal_error("Synthesize on " + model_id + ": no stimulus");
  ASSIGN_OR_RETURN(auto rates,
                   neurons.rates(std::vector<std::uint8_t>(pixels.begin(), pixels.end()), h, w));
  return truth.best[k] > 0 ? rates[k] / truth.best[k] : 0.0;
}

}  // namespace

// (b): one session per readout form; a SYNTHESIZE block at --steps, then one at --short-steps on
// the same fit (no report in between) with the same seeds.
StatusOr<json> run_self_consistent(const Context& ctx, std::vector<std::string>& summary) {
  const Options& o = ctx.o;
  const auto start = Clock::now();
  const auto outputs = session_outputs(o.v4, o.session);
  if (static_cast<int>(outputs.size()) < o.neurons) {
    return invalid_argument("golden/models_list.txt lists " + std::to_string(outputs.size()) +
                            " neurons of session " + o.session);
  }
  // Every output of the session (one forward pass of the shared model an image), to choose from.
  std::vector<NeuronSpec> all;
  for (const auto& [neuron, out] : outputs) all.push_back({o.base, out});
  ASSIGN_OR_RETURN(auto candidates, TrueNeurons::load(all, ctx.model_dirs));
  std::vector<double> raw;
  RETURN_IF_ERROR(pool_truth(*ctx.pool, *candidates, o.rate_at_p90, &raw).status());
  const int n = static_cast<int>(ctx.pool->images.size()), m = candidates->size();
  std::vector<std::pair<double, int>> by_variance;
  for (int j = 0; j < m; ++j) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; ++i) {
      const double v = raw[std::size_t(i) * m + j];
      s += v;
      ss += v * v;
    }
    by_variance.emplace_back(ss / n - (s / n) * (s / n), all[j].output);
  }
  std::sort(by_variance.rbegin(), by_variance.rend());
  std::vector<int> chosen;
  for (int j = 0; j < o.neurons; ++j) chosen.push_back(by_variance[j].second);
  std::sort(chosen.begin(), chosen.end());
  std::vector<NeuronSpec> specs;
  std::vector<std::string> labels, channel_ids;
  for (int out : chosen) {
    specs.push_back({o.base, out});
    // "shared_compact_model_50filters" -> "50filters:out3"
    const auto cut = o.base.rfind('_');
    labels.push_back((cut == std::string::npos ? o.base : o.base.substr(cut + 1)) + ":out" +
                     std::to_string(out));
    channel_ids.push_back("ch" + std::to_string(channel_ids.size()));
  }
  ASSIGN_OR_RETURN(auto neurons, TrueNeurons::load(specs, ctx.model_dirs));
  ASSIGN_OR_RETURN(auto truth, pool_truth(*ctx.pool, *neurons, o.rate_at_p90));
  std::printf(
      "\n(b) self-consistent: virtual neurons = the %d outputs of %s (the base model) with the "
      "largest raw-output variance over the pool among session %s's %zu (%.1f s)\n",
      o.neurons, o.base.c_str(), o.session.c_str(), outputs.size(), seconds_since(start));
  json neurons_json = neurons_table(*neurons, truth, labels);

  std::vector<v1::ReadoutForm> forms;
  if (o.readout != "factorized") forms.push_back(v1::RIDGE);
  if (o.readout != "ridge") forms.push_back(v1::FACTORIZED);
  json forms_json = json::array();
  for (auto form : forms) {
    const std::string fname = form_name(form), id = "insilico-b-" + fname;
    const int every = form == v1::FACTORIZED ? o.factorized_block : o.block;
    std::printf("\n  (b) readout %s: session %s, %zu pool images, %d a report\n", fname.c_str(),
                id.c_str(), ctx.fit.size(), every);
    std::fflush(stdout);
    const auto form_start = Clock::now();
    RETURN_IF_ERROR(open_session(*ctx.client, id, labels, o.base, ctx.pool_name, form,
                                 "in-silico (b): virtual neurons = the base's own outputs")
                        .status());
    std::uint64_t poisson_state = o.poisson_seed * 1000003;
    ASSIGN_OR_RETURN(auto steps, report_pool_images(*ctx.client, id, ctx.fit, every, truth,
                                                    o.repeats, poisson_state));
    const double fit_s = seconds_since(form_start);
    json blocks = json::array();
    for (int steps_asked : {o.steps, o.short_steps}) {
      if (steps_asked <= 0) continue;
      ASSIGN_OR_RETURN(
          auto block,
          synthesize_block(*ctx.client, id, synthesize_strategy(cowley_spec(steps_asked), 101),
                           neurons->size(), channel_ids, *neurons, truth));
      const auto ratios = ratios_of(block);
      std::printf("  (b) %s, cowley2026 %d steps: NextBlock %.1f s (%s), fit v%d\n", fname.c_str(),
                  steps_asked, block.wall_s, block.stop_reason.c_str(), block.calibration_version);
      print_block(block, labels, truth);
      std::printf("    median true / best pool: %.2f (target %.1f: %s)\n", median(ratios), kTargetB,
                  median(ratios) >= kTargetB ? "met" : "missed");
      std::fflush(stdout);
      summary.push_back(
          summary_line("(b)", fname + ", cowley2026 " + std::to_string(steps_asked) + " steps",
                       ratios, block.wall_s));
      json bj = block_json(block);
      bj["steps"] = steps_asked;
      bj["method"] = "cowley2026";
      bj["target"] = kTargetB;
      blocks.push_back(bj);
    }
    forms_json.push_back({{"readout", fname},
                          {"session_id", id},
                          {"report_every", every},
                          {"fit_s", fit_s},
                          {"reports", steps_json(steps)},
                          {"blocks", blocks}});
  }
  return json{{"neurons", neurons_json},
              {"selection", "the " + std::to_string(o.neurons) + " outputs of session " +
                                o.session + " with the largest raw-output variance over the pool"},
              {"forms", forms_json},
              {"total_s", seconds_since(start)}};
}

// (c): per variant a session: the pool images, then --rounds of SYNTHESIZE block, scored,
// reported (a refit including the synthesized trials). Then the baselines outside the loop.
StatusOr<json> run_across_models(const Context& ctx, std::vector<std::string>& summary) {
  const Options& o = ctx.o;
  const auto start = Clock::now();
  const auto outputs = session_outputs(o.v4, o.session);
  std::vector<NeuronSpec> specs;
  std::vector<std::string> labels, channel_ids;
  for (int k = 0; k < o.neurons; ++k) {
    const int neuron = o.first_neuron + k;
    specs.push_back({"compact_model_" + o.session + "_neuron" + std::to_string(neuron), 0});
    labels.push_back("compact_" + o.session + "_neuron" + std::to_string(neuron));
    channel_ids.push_back("ch" + std::to_string(k));
  }
  ASSIGN_OR_RETURN(auto neurons, TrueNeurons::load(specs, ctx.model_dirs));
  ASSIGN_OR_RETURN(auto truth, pool_truth(*ctx.pool, *neurons, o.rate_at_p90));
  const v1::ReadoutForm form = o.c_readout == "factorized" ? v1::FACTORIZED : v1::RIDGE;
  const std::string fname = form_name(form);
  std::printf(
      "\n(c) across models: virtual neurons = compact_model_%s_neuron%d..%d, base %s, readout %s "
      "(%.1f s)\n",
      o.session.c_str(), o.first_neuron, o.first_neuron + o.neurons - 1, o.base.c_str(),
      fname.c_str(), seconds_since(start));
  json neurons_json = neurons_table(*neurons, truth, labels);

  json variants_json = json::array();
  for (const std::string& variant : split_list(o.c_variants)) {
    if (variant != "naive" && variant != "prior") {
      return invalid_argument("--c-variants: unknown variant '" + variant + "'");
    }
    const v1::SynthesisSpec spec = variant == "naive" ? cowley_spec(o.steps) : prior_spec(o);
    const std::string described =
        variant == "naive" ? "cowley2026 " + std::to_string(o.steps) + " steps" : describe_prior(o);
    const std::string id = "insilico-c-" + fname + "-" + variant;
    std::printf("\n  (c) %s (%s): session %s\n", variant.c_str(), described.c_str(), id.c_str());
    std::fflush(stdout);
    const auto variant_start = Clock::now();
    RETURN_IF_ERROR(open_session(*ctx.client, id, labels, o.base, ctx.pool_name, form,
                                 "in-silico (c): virtual neurons = compact models")
                        .status());
    // The same Poisson draws for every variant: each starts from the same fit.
    std::uint64_t poisson_state = o.poisson_seed * 1000003;
    const int every = form == v1::FACTORIZED ? o.factorized_block : o.block;
    ASSIGN_OR_RETURN(auto steps, report_pool_images(*ctx.client, id, ctx.fit, every, truth,
                                                    o.repeats, poisson_state));
    // ratio[k][r], promised[k][r]: neuron k's stimulus of round r.
    std::vector<std::vector<double>> ratio(o.neurons, std::vector<double>(o.rounds, 0.0));
    std::vector<std::vector<double>> promised = ratio;
    json rounds = json::array();
    std::vector<double> all_ratios;
    double synth_s = 0;
    for (int r = 0; r < o.rounds; ++r) {
      // Seeds per round, the same for every variant.
      ASSIGN_OR_RETURN(auto block,
                       synthesize_block(*ctx.client, id, synthesize_strategy(spec, 1000 + 100 * r),
                                        neurons->size(), channel_ids, *neurons, truth));
      ASSIGN_OR_RETURN(auto reported,
                       report_block(*ctx.client, id, block, o.repeats, poisson_state));
      synth_s += block.wall_s;
      std::vector<double> promised_r;
      for (const auto& s : block.stimuli) {
        ratio[s.channel][r] = s.ratio;
        promised[s.channel][r] = s.predicted_ratio;
        promised_r.push_back(s.predicted_ratio);
        all_ratios.push_back(s.ratio);
      }
      std::printf(
          "    round %d: median true/best pool %.2f, promised by the fit %.2f; NextBlock %.1f s "
          "(%s, fit v%d), report %.1f s -> fit v%d, median cv r %.3f\n",
          r + 1, median(ratios_of(block)), median(promised_r), block.wall_s,
          block.stop_reason.c_str(), block.calibration_version, reported.report_s, reported.version,
          reported.median_cv_r);
      std::fflush(stdout);
      json bj = block_json(block);
      bj["round"] = r + 1;
      bj["report"] = {{"calibration_version", reported.version},
                      {"median_cv_r", reported.median_cv_r},
                      {"cv_r", reported.cv_r},
                      {"report_s", reported.report_s}};
      rounds.push_back(bj);
    }
    // The table: neuron x round, true response / best pool image (true, all 1200).
    std::printf("\n  (c) %s, %s: true response / best pool image, neuron x round\n",
                variant.c_str(), described.c_str());
    std::printf("    %-28s", "neuron");
    for (int r = 0; r < o.rounds; ++r) std::printf("  round%-2d", r + 1);
    std::printf("  median  promised\n");
    for (int k = 0; k < o.neurons; ++k) {
      std::printf("    %-28s", labels[k].c_str());
      for (int r = 0; r < o.rounds; ++r) std::printf("  %7.2f", ratio[k][r]);
      std::printf("  %6.2f  %8.2f\n", median(ratio[k]), median(promised[k]));
    }
    std::printf("    %-28s", "median");
    for (int r = 0; r < o.rounds; ++r) {
      std::vector<double> col;
      for (int k = 0; k < o.neurons; ++k) col.push_back(ratio[k][r]);
      std::printf("  %7.2f", median(col));
    }
    std::printf("  %6.2f  (all %d stimuli; goal %.1f)\n", median(all_ratios),
                static_cast<int>(all_ratios.size()), kGoalC);
    std::fflush(stdout);
    summary.push_back(summary_line("(c)", variant + ": " + described, all_ratios, synth_s));
    variants_json.push_back({{"variant", variant},
                             {"method", described},
                             {"session_id", id},
                             {"reports", steps_json(steps)},
                             {"rounds", rounds},
                             {"ratio", ratio},
                             {"promised_ratio", promised},
                             {"median_ratio", median(all_ratios)},
                             {"total_s", seconds_since(variant_start)}});
  }

  // Baselines outside the loop (Synthesize RPC, seed 1000 = round 1's seed): the true neuron's own
  // model (the ceiling), the base model's own output for that neuron (no calibration at all).
  json baselines_json = json::array();
  for (const std::string& baseline : split_list(o.c_baselines)) {
    if (baseline != "oracle" && baseline != "shared" && baseline != "shared-prior") {
      return invalid_argument("--c-baselines: unknown baseline '" + baseline + "'");
    }
    const auto baseline_start = Clock::now();
    std::vector<double> ratios;
    for (int k = 0; k < o.neurons; ++k) {
      const bool on_truth = baseline == "oracle";
      auto it = outputs.find(o.first_neuron + k);
      if (!on_truth && it == outputs.end()) {
        return invalid_argument("golden/models_list.txt has no neuron " +
                                std::to_string(o.first_neuron + k) + " of session " + o.session);
      }
      const v1::SynthesisSpec spec =
          baseline == "shared-prior" ? prior_spec(o) : cowley_spec(o.steps);
      ASSIGN_OR_RETURN(double q,
                       synthesize_direct(*ctx.client, on_truth ? specs[k].model_id : o.base, spec,
                                         on_truth ? 0 : it->second, 1000, *neurons, truth, k));
      ratios.push_back(q);
    }
    const double s = seconds_since(baseline_start);
    const std::string what = baseline == "oracle" ? "oracle: cowley2026 on the true model"
                             : baseline == "shared"
                                 ? "shared: cowley2026 on the base's own output"
                                 : "shared-prior: the prior on the base's own output";
    std::printf("\n  (c) baseline %s (%s), outside the loop (%.0f s):\n    ", what.c_str(),
                baseline == "shared-prior"
                    ? describe_prior(o).c_str()
                    : ("cowley2026 " + std::to_string(o.steps) + " steps").c_str(),
                s);
    for (int k = 0; k < o.neurons; ++k) std::printf(" n%d %.2f", o.first_neuron + k, ratios[k]);
    std::printf("   median %.2f\n", median(ratios));
    std::fflush(stdout);
    summary.push_back(summary_line("(c)", what, ratios, s));
    baselines_json.push_back({{"baseline", baseline},
                              {"what", what},
                              {"ratio", ratios},
                              {"median_ratio", median(ratios)},
                              {"seconds", s}});
  }
  return json{{"neurons", neurons_json},     {"readout", fname}, {"variants", variants_json},
              {"baselines", baselines_json}, {"goal", kGoalC},   {"total_s", seconds_since(start)}};
}

}  // namespace stimloop::bench::insilico
