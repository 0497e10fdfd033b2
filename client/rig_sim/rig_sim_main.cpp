// stimloop-rig-sim: a whole closed-loop session without a monkey. Opens a session on a server,
// then block after block: asks for stimuli (NextBlock, by a schedule of strategies), "shows" each
// to the virtual neurons (virtual_neurons.h), reports Poisson spike counts for R repeats
// (ReportResponses), and prints what was shown, the calibration's cross-validated r and how the
// neurons responded by origin. Like a real rig it retries every call that failed for want of a
// server (the calls are idempotent: the block id and the trial keys make a retry harmless), so
// it carries on through a server restart.
//
//   stimloop-rig-sim --server 127.0.0.1:50051 --session demo1 --base-model demo_population
//       --pool demo --neuron demo_population:0 --neuron demo_population:1 --blocks 6 --count 8
//       --schedule pool,pool,synthesize
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "client/lib/stimloop_client.h"
#include "client/rig_sim/virtual_neurons.h"
#include "common/image_io.h"

namespace {

namespace v1 = stimloop::v1;
using stimloop::Status;
using stimloop::StatusCode;
using Clock = std::chrono::steady_clock;

bool retryable(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded ||
         s.code() == StatusCode::kCancelled || s.code() == StatusCode::kUnknown ||
         s.code() == StatusCode::kInternal;
}

// Retries `call` while it fails for want of a server, up to `budget`; each retry is logged.
template <typename Call>
auto with_retries(const char* what, Clock::duration budget, int& retries, Call call) {
  const auto give_up = Clock::now() + budget;
  for (;;) {
    auto result = call();
    if (result.ok() || !retryable(result.status()) || Clock::now() > give_up) return result;
    ++retries;
    std::fprintf(stderr, "rig-sim: %s failed (%s); retrying\n", what,
                 result.status().to_string().c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

v1::StrategyKind strategy_kind(const std::string& name) {
  if (name == "synthesize") return v1::SYNTHESIZE;
  if (name == "adept") return v1::ADEPT;
  if (name == "committee") return v1::COMMITTEE;
  return v1::POOL;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / v.size();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stimloop-rig-sim: a simulated rig running a closed-loop session"};
  stimloop::client::ClientOptions options;
  std::string session = "sim", base_model = "demo_population", pool = "demo", models_dir;
  std::string schedule_text = "pool,pool,synthesize", readout = "ridge", summary_path;
  std::vector<std::string> neuron_texts;
  int blocks = 6, count = 8, repeats = 5, steps = 0, min_stimuli = 0;
  double gain = 1.0, deadline_ms = 0, retry_s = 120, trial_ms = 0;
  bool no_prepare = false;
  double prepared_min_agreement = 0;
  std::uint64_t seed = 1;
  app.add_option("--server", options.address, "HOST:PORT")->required();
  app.add_option("--tls-ca", options.tls_ca, "PEM CA: connect with TLS");
  app.add_option("--tls-cert", options.tls_cert, "PEM client certificate (mutual TLS)");
  app.add_option("--tls-key", options.tls_key, "PEM key of --tls-cert");
  app.add_option("--token-file", options.token_file, "Bearer token file");
  app.add_option("--session", session, "Session id (reusing one continues it)")
      ->capture_default_str();
  app.add_option("--base-model", base_model, "Model whose features the server calibrates on")
      ->capture_default_str();
  app.add_option("--pool", pool, "The server's --pool NAME to draw from")->capture_default_str();
  app.add_option("--neuron", neuron_texts,
                 "Virtual neuron MODEL[:OUTPUT], one per channel (default: outputs 0-3 of "
                 "demo_population)");
  app.add_option("--models", models_dir, "Directory of the virtual neurons' models (local)");
  app.add_option("--blocks", blocks, "Blocks to run")->capture_default_str();
  app.add_option("--count", count, "Stimuli per block")->capture_default_str();
  app.add_option("--schedule", schedule_text,
                 "Strategy per block, comma-separated (pool, synthesize, adept, committee); the "
                 "last repeats")
      ->capture_default_str();
  app.add_option("--repeats", repeats, "Trials (repeats) per stimulus")->capture_default_str();
  app.add_option("--gain", gain, "Spikes per trial per unit of model output")
      ->capture_default_str();
  app.add_option("--steps", steps, "Synthesis steps (0: the method's default)");
  app.add_option("--deadline-ms", deadline_ms, "NextBlock deadline (0: none)");
  app.add_option("--min-stimuli", min_stimuli, "Stimuli before the first fit (0: server default)");
  app.add_option("--readout", readout, "ridge or factorized")->capture_default_str();
  app.add_option("--seed", seed, "Seed of the Poisson draws")->capture_default_str();
  app.add_option("--retry-s", retry_s, "How long to keep retrying an unreachable server")
      ->capture_default_str();
  app.add_option("--trial-ms", trial_ms,
                 "Time one trial takes (the rig waits count x repeats x this before reporting; "
                 "the server prepares the next block meanwhile)")
      ->capture_default_str();
  app.add_flag("--no-prepare", no_prepare, "Ask the server not to prepare the next block ahead");
  app.add_option("--prepared-min-agreement", prepared_min_agreement,
                 "Session setting: how far a refit may move a readout before the prepared "
                 "syntheses restart (0: server default)");
  app.add_option("--summary-json", summary_path, "Write a JSON summary of the run here");
  CLI11_PARSE(app, argc, argv);
  if (neuron_texts.empty()) {
    neuron_texts = {"demo_population:0", "demo_population:1", "demo_population:2",
                    "demo_population:3"};
  }
  std::vector<std::string> schedule;
  {
    std::stringstream ss(schedule_text);
    for (std::string item; std::getline(ss, item, ',');) {
      if (item != "pool" && item != "synthesize" && item != "adept" && item != "committee") {
        std::fprintf(stderr, "error: --schedule: unknown strategy '%s'\n", item.c_str());
        return 2;
      }
      schedule.push_back(item);
    }
    if (schedule.empty()) schedule.push_back("pool");
  }

  std::vector<stimloop::rigsim::NeuronSpec> specs;
  for (const auto& t : neuron_texts) {
    auto spec = stimloop::rigsim::parse_neuron(t);
    if (!spec.ok()) {
      std::fprintf(stderr, "error: %s\n", spec.status().to_string().c_str());
      return 2;
    }
    specs.push_back(*spec);
  }
  auto neurons = stimloop::rigsim::VirtualNeurons::load(specs, models_dir, gain);
  if (!neurons.ok()) {
    std::fprintf(stderr, "error: %s\n", neurons.status().to_string().c_str());
    return 1;
  }
  auto client = stimloop::client::StimloopClient::connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "error: %s\n", client.status().to_string().c_str());
    return 1;
  }
  const auto budget =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(retry_s));
  int retries = 0;

  v1::OpenSessionRequest open;
  open.set_session_id(session);
  open.set_rig("stimloop-rig-sim");
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto* ch = open.add_channels();
    ch->set_id("ch" + std::to_string(i));
    ch->set_name("virtual " + neuron_texts[i]);
  }
  open.set_base_model(base_model);
  open.set_pool(pool);
  open.mutable_calibration()->set_form(readout == "factorized" ? v1::FACTORIZED : v1::RIDGE);
  open.mutable_calibration()->set_min_stimuli(min_stimuli);
  open.mutable_calibration()->set_prepared_min_agreement(prepared_min_agreement);
  auto opened =
      with_retries("OpenSession", budget, retries, [&] { return (*client)->open_session(open); });
  if (!opened.ok()) {
    std::fprintf(stderr, "error: OpenSession: %s\n", opened.status().to_string().c_str());
    return 1;
  }
  std::printf("session %s: %d channels, base %s, pool %s (%d images)\n", session.c_str(),
              opened->channels_size(), base_model.c_str(), pool.c_str(), opened->pool_images());
  auto channel_index = [&](const std::string& id) {
    for (int c = 0; c < opened->channels_size(); ++c) {
      if (opened->channels(c).id() == id) return c;
    }
    return -1;
  };
  std::printf("%5s %-10s %6s %8s %10s %12s %12s %10s %5s %6s %6s\n", "block", "strategy", "shown",
              "fit", "median r", "pool mean", "synth mean", "synth/pool", "prep", "steps", "agree");

  std::uint64_t poisson_state = seed * 1000003;
  long acknowledged = 0, stored = 0, duplicates = 0;
  // Per channel: the best true rate of a pool image so far (what synthesis must beat).
  std::vector<double> best_pool(specs.size(), 0.0);
  nlohmann::json per_block = nlohmann::json::array();
  std::map<std::string, std::vector<double>> latencies;
  for (int b = 0; b < blocks; ++b) {
    const std::string kind = schedule[std::min<std::size_t>(b, schedule.size() - 1)];
    v1::NextBlockRequest next;
    next.set_session_id(session);
    next.set_count(count);
    next.set_block_id("sim-block" + std::to_string(b));
    next.mutable_strategy()->set_kind(strategy_kind(kind));
    next.mutable_strategy()->set_steps(steps);
    next.set_deadline_ms(deadline_ms);
    next.set_encoding(v1::RAW_RGB8);
    next.set_no_prepare_next(no_prepare);
    const auto asked = Clock::now();
    auto block =
        with_retries("NextBlock", budget, retries, [&] { return (*client)->next_block(next); });
    const double latency_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - asked).count();
    latencies[kind].push_back(latency_ms);
    if (!block.ok()) {
      std::fprintf(stderr, "error: NextBlock %d: %s\n", b, block.status().to_string().c_str());
      return 1;
    }
    v1::ReportResponsesRequest report;
    report.set_session_id(session);
    std::vector<double> pool_means, synth_means, synth_ratios;
    std::vector<int> synth_steps;  // steps each synthesized stimulus got
    for (const auto& st : block->stimuli()) {
      const std::vector<std::uint8_t> pixels(st.image().data().begin(), st.image().data().end());
      auto rates = (*neurons)->rates(pixels, st.image().height(), st.image().width());
      if (!rates.ok()) {
        std::fprintf(stderr, "error: %s\n", rates.status().to_string().c_str());
        return 1;
      }
      if (st.origin() == v1::SYNTHESIZED) {
        // The true response of the channel it was made for, over that channel's best pool image.
        const int c = channel_index(st.target_channel());
        synth_means.push_back(c >= 0 ? (*rates)[c] : 0.0);
        const auto record = nlohmann::json::parse(st.record_json(), nullptr, false);
        if (record.is_object()) synth_steps.push_back(record.value("steps_done", 0));
        if (c >= 0 && best_pool[c] > 0) synth_ratios.push_back((*rates)[c] / best_pool[c]);
      } else {
        pool_means.push_back(mean(*rates));
        for (std::size_t c = 0; c < rates->size(); ++c) {
          best_pool[c] = std::max(best_pool[c], (*rates)[c]);
        }
      }
      for (int r = 0; r < repeats; ++r) {
        auto* t = report.add_trials();
        t->set_stimulus_id(st.stimulus_id());
        t->set_repeat_index(r);
        for (double rate : *rates) {
          t->add_responses(stimloop::rigsim::poisson(rate, poisson_state));
        }
      }
    }
    // The trials themselves: the server prepares the next block meanwhile.
    if (trial_ms > 0) {
      std::this_thread::sleep_for(
          std::chrono::duration<double, std::milli>(trial_ms * block->stimuli_size() * repeats));
    }
    auto reported = with_retries("ReportResponses", budget, retries,
                                 [&] { return (*client)->report_responses(report); });
    if (!reported.ok()) {
      std::fprintf(stderr, "error: ReportResponses %d: %s\n", b,
                   reported.status().to_string().c_str());
      return 1;
    }
    acknowledged += report.trials_size();
    stored += reported->stored();
    duplicates += reported->duplicates();
    std::vector<double> rs;
    double agreement = 1.0;  // the refit's lowest agreement with the previous fit
    for (const auto& c : reported->calibration().channels()) {
      if (c.calibrated()) rs.push_back(c.cv_r());
      if (c.calibrated()) agreement = std::min(agreement, c.agreement_with_previous());
    }
    std::sort(rs.begin(), rs.end());
    const double median_r = rs.empty() ? 0.0 : rs[rs.size() / 2];
    std::sort(synth_ratios.begin(), synth_ratios.end());
    const double median_ratio = synth_ratios.empty() ? 0.0 : synth_ratios[synth_ratios.size() / 2];
    char ratio[16] = "-";
    if (!synth_ratios.empty()) std::snprintf(ratio, sizeof ratio, "%.2f", median_ratio);
    char fit[16] = "-", median[16] = "-", pm[16] = "-", sm[16] = "-";
    if (reported->calibration().version() > 0) {
      std::snprintf(fit, sizeof fit, "v%d", reported->calibration().version());
      std::snprintf(median, sizeof median, "%.3f", median_r);
    }
    if (!pool_means.empty()) std::snprintf(pm, sizeof pm, "%.2f", mean(pool_means));
    if (!synth_means.empty()) std::snprintf(sm, sizeof sm, "%.2f", mean(synth_means));
    std::sort(synth_steps.begin(), synth_steps.end());
    const int median_steps = synth_steps.empty() ? 0 : synth_steps[synth_steps.size() / 2];
    char steps_text[16] = "-";
    if (!synth_steps.empty()) std::snprintf(steps_text, sizeof steps_text, "%d", median_steps);
    std::printf("%5d %-10s %6d %8s %10s %12s %12s %10s %5d %6s %6.3f\n", b, kind.c_str(),
                block->stimuli_size(), fit, median, pm, sm, ratio, block->prepared_stimuli(),
                steps_text, agreement);
    std::fflush(stdout);
    per_block.push_back({{"block", b},
                         {"strategy", kind},
                         {"calibration_version", reported->calibration().version()},
                         {"median_cv_r", median_r},
                         {"pool_mean_rate", mean(pool_means)},
                         {"synthesized_mean_rate", mean(synth_means)},
                         {"median_synthesized_over_best_pool", median_ratio},
                         {"next_block_ms", latency_ms},
                         {"prepared_stimuli", block->prepared_stimuli()},
                         {"prepared_invalidated", reported->prepared_invalidated()},
                         {"median_synthesis_steps", median_steps},
                         {"lowest_agreement_with_previous", agreement},
                         {"stop_reason", block->stop_reason()}});
  }
  // NextBlock latency per strategy (what a rig waits between trials), p50 and p99.
  nlohmann::json latency_json = nlohmann::json::object();
  for (auto& [kind, ms] : latencies) {
    std::sort(ms.begin(), ms.end());
    const auto at = [&](double q) {
      return ms[std::min(ms.size() - 1, std::size_t(q * ms.size()))];
    };
    std::printf("NextBlock %-10s n=%zu p50=%.1f ms p99=%.1f ms max=%.1f ms\n", kind.c_str(),
                ms.size(), at(0.5), at(0.99), ms.back());
    latency_json[kind] = {
        {"n", ms.size()}, {"p50_ms", at(0.5)}, {"p99_ms", at(0.99)}, {"max_ms", ms.back()}};
  }
  auto info =
      with_retries("GetSession", budget, retries, [&] { return (*client)->get_session(session); });
  if (!info.ok()) {
    std::fprintf(stderr, "error: GetSession: %s\n", info.status().to_string().c_str());
    return 1;
  }
  std::printf(
      "rig-sim: session %s: %d blocks, %ld trials acknowledged (%ld stored, %ld already stored), "
      "server holds %d trials, %d retries\n",
      session.c_str(), blocks, acknowledged, stored, duplicates, info->trials(), retries);
  if (!summary_path.empty()) {
    std::ofstream out(summary_path);
    out << nlohmann::json{{"session", session},
                          {"blocks", blocks},
                          {"acknowledged_trials", acknowledged},
                          {"stored", stored},
                          {"duplicates", duplicates},
                          {"server_trials", info->trials()},
                          {"retries", retries},
                          {"next_block_latency", latency_json},
                          {"per_block", per_block}}
               .dump(2)
        << "\n";
  }
  return 0;
}
