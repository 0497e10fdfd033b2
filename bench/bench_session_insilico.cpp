// stimloop-bench-session-insilico: closed-loop sessions against virtual neurons whose truth is
// known, through the Sessions protocol against an in-process server (CPU backend, the published
// shared and compact models, the pool images_<session>.zip, a fresh temporary data dir).
//
// (b) self-consistent. The virtual neurons are outputs of the base model itself (the shared
//     50-filter model): the --neurons outputs of the session with the largest variance over the
//     pool. A seeded 600 of the 1200 pool images are reported (Poisson counts, 5 repeats), then one
//     SYNTHESIZE block (a stimulus per channel) is scored: the target neuron's TRUE (noise-free)
//     rate over its best true rate on all 1200 pool images. The calibration can be exact here, so
//     this measures the loop and the synthesis, not model mismatch. Target: median >= 2.7x.
// (c) across models. The virtual neurons are the published compact models of the session
//     (neurons 0..N-1), the base still the shared model. After the same 600 images, rounds of
//     SYNTHESIZE block -> true rates -> Poisson trials reported (a refit that includes them).
//     Variants: "naive" (cowley2026, --steps) and "prior" (Adam with jitter, gradient blur and a
//     total-variation penalty through Strategy.synthesis: an image prior that may transfer better
//     between two models of one neuron). Baselines outside the loop: "oracle" (cowley2026 on the
//     true neuron's own model: the ceiling), "shared" (cowley2026 on the base model's own output
//     for that neuron: no calibration at all), "shared-prior" (the prior on it). Goal: 1.5x.
//
// Gain per neuron: 10 / its 90th percentile of max(0, output) over the pool, so a neuron's 90th-
// percentile pool image draws 10 spikes a trial on average (client/rig_sim's Poisson draws).
//
//   stimloop-bench-session-insilico [--experiment b|c|both] [--readout ridge|factorized|both]
//       [--steps 1000] [--rounds 5] [--neurons 8] [--json FILE] [--threads N] [--v4 DIR]
//
// Exit status: 0 done, 1 an error, 77 the data is absent. Targets are reported, not enforced.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/session_insilico_experiments.h"
#include "bench/session_insilico_lib.h"
#include "bench/v4_data.h"
#include "server/service/server.h"

namespace {

namespace fs = std::filesystem;
namespace sim = stimloop::bench::insilico;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stimloop-bench-session-insilico: closed-loop sessions against virtual neurons"};
  sim::Options o;
  app.add_option("--v4", o.v4, "Published data (default: $STIMLOOP_V4_DATA, else ../shared/v4)");
  app.add_option("--experiment", o.experiment, "b (self-consistent), c (across models) or both")
      ->check(CLI::IsMember({"b", "c", "both"}))
      ->capture_default_str();
  app.add_option("--readout", o.readout, "(b): ridge, factorized or both")
      ->check(CLI::IsMember({"ridge", "factorized", "both"}))
      ->capture_default_str();
  app.add_option("--c-readout", o.c_readout, "(c): ridge or factorized")
      ->check(CLI::IsMember({"ridge", "factorized"}))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "cowley2026 steps of the SYNTHESIZE blocks")
      ->capture_default_str();
  app.add_option("--short-steps", o.short_steps,
                 "(b): a second block with this many steps on the same fit (0: none)")
      ->capture_default_str();
  app.add_option("--rounds", o.rounds, "(c): rounds of synthesize-and-report")
      ->capture_default_str();
  app.add_option("--neurons", o.neurons, "Virtual neurons (channels)")->capture_default_str();
  app.add_option("--first-neuron", o.first_neuron,
                 "(c): the compact models of neurons first..first+N-1")
      ->capture_default_str();
  app.add_option("--repeats", o.repeats, "Poisson trials per stimulus")->capture_default_str();
  app.add_option("--fit-images", o.fit_images, "Pool images reported before synthesis")
      ->capture_default_str();
  app.add_option("--block", o.block, "Pool images per report (each report refits)")
      ->capture_default_str();
  app.add_option("--factorized-block", o.factorized_block,
                 "Pool images per report for the factorized form (its refits are slow)")
      ->capture_default_str();
  app.add_option("--c-variants", o.c_variants, "(c): naive and/or prior, comma-separated")
      ->capture_default_str();
  app.add_option("--c-baselines", o.c_baselines,
                 "(c): oracle, shared and/or shared-prior, comma-separated ('' none)")
      ->capture_default_str();
  app.add_option("--prior-steps", o.prior_steps, "(c) prior: Adam steps")->capture_default_str();
  app.add_option("--prior-step-size", o.prior_step_size, "(c) prior: Adam step size (0: 2)")
      ->capture_default_str();
  app.add_option("--prior-jitter", o.prior_jitter, "(c) prior: jitter (pixels)")
      ->capture_default_str();
  app.add_option("--prior-blur", o.prior_blur, "(c) prior: gradient blur sigma")
      ->capture_default_str();
  app.add_option("--prior-tv", o.prior_tv, "(c) prior: total-variation weight")
      ->capture_default_str();
  app.add_option("--rate-at-p90", o.rate_at_p90,
                 "Spikes a trial at a neuron's pool 90th percentile")
      ->capture_default_str();
  app.add_option("--split-seed", o.split_seed, "Seed of the reported images' draw")
      ->capture_default_str();
  app.add_option("--poisson-seed", o.poisson_seed, "Seed of the Poisson draws")
      ->capture_default_str();
  app.add_option("--session", o.session, "Published session (pool and compact models)")
      ->capture_default_str();
  app.add_option("--base", o.base, "Base model of the calibration")->capture_default_str();
  app.add_option("--json", o.json_path, "Write every result here");
  app.add_option("--threads", o.threads, "Server CPU threads (0: all)");
  CLI11_PARSE(app, argc, argv);
  if (o.neurons < 1 || o.rounds < 1 || o.repeats < 1 || o.fit_images < 10 || o.block < 1 ||
      o.factorized_block < 1) {
    std::fprintf(stderr,
                 "error: need --neurons, --rounds, --repeats, --block >= 1, "
                 "--fit-images >= 10\n");
    return 1;
  }

  // Absent data is a skip (77), not a failure: the data is never committed.
  const std::string marker = "shared_compact_models/" + o.base + ".keras";
  o.v4 = o.v4.empty() ? stimloop::bench::find_v4_data(marker) : o.v4;
  for (const std::string& file : std::vector<std::string>{
           marker, "images/images_" + o.session + ".zip", "golden/models_list.txt",
           "compact_models/compact_model_" + o.session + "_neuron0.keras"}) {
    if (o.v4.empty() || !fs::is_regular_file(fs::path(o.v4) / file)) {
      std::fprintf(stderr, "skip: the published V4 data is absent (%s: %s missing)\n",
                   o.v4.empty() ? "no data folder" : o.v4.c_str(), file.c_str());
      return 77;
    }
  }

  const auto run_start = Clock::now();
  sim::Context ctx;
  ctx.o = o;
  ctx.pool_name = "s" + o.session;
  const std::string zip = (fs::path(o.v4) / "images" / ("images_" + o.session + ".zip")).string();
  ctx.model_dirs = {(fs::path(o.v4) / "shared_compact_models").string(),
                    (fs::path(o.v4) / "compact_models").string()};
  // The pool decoded here by the server's own loader: the truth is computed on the same pixels
  // (and every handed-out block is checked against them).
  auto pool = stimloop::sessions::load_image_pool(ctx.pool_name, zip);
  if (!pool.ok()) {
    std::fprintf(stderr, "error: pool: %s\n", pool.status().to_string().c_str());
    return 1;
  }
  ctx.pool = &*pool;
  const int images = static_cast<int>(pool->images.size());
  if (o.fit_images > images) {
    std::fprintf(stderr, "error: --fit-images %d > the pool's %d images\n", o.fit_images, images);
    return 1;
  }
  const std::vector<int> order = sim::seeded_order(images, o.split_seed);
  ctx.fit.assign(order.begin(), order.begin() + o.fit_images);

  // A fresh store each run: a leftover session with the same id would be resumed, not rerun.
  std::string data_dir = (fs::temp_directory_path() / "stimloop-insilico-XXXXXX").string();
  if (mkdtemp(data_dir.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  spdlog::set_level(spdlog::level::warn);
  stimloop::service::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.backend = "cpu";
  so.threads = o.threads;
  so.model_dirs = ctx.model_dirs;
  so.data_dir = data_dir;
  so.pools = {ctx.pool_name + "=" + zip};
  auto started = stimloop::service::StimloopServer::start(so);
  if (!started.ok()) {
    std::fprintf(stderr, "error: server: %s\n", started.status().to_string().c_str());
    fs::remove_all(data_dir);
    return 1;
  }
  auto server = std::move(started).value();
  stimloop::client::ClientOptions co;
  co.address = "127.0.0.1:" + std::to_string(server->port());
  auto client = std::move(stimloop::client::StimloopClient::connect(co)).value();
  ctx.client = client.get();
  std::printf(
      "server: backend %s, %d threads asked (0: all), up %.1f s after start; pool %s: %d images; "
      "%d reported (split seed %llu: first %s, %s, %s), %d repeats\n",
      server->backend_name().c_str(), o.threads, seconds_since(run_start), ctx.pool_name.c_str(),
      images, o.fit_images, static_cast<unsigned long long>(o.split_seed),
      pool->images[ctx.fit[0]].name.c_str(), pool->images[ctx.fit[1]].name.c_str(),
      pool->images[ctx.fit[2]].name.c_str(), o.repeats);
  std::fflush(stdout);

  int exit_code = 0;
  std::vector<std::string> summary;
  nlohmann::json results;
  // Written after each experiment, so that a long run cut short keeps what it measured.
  auto write_json = [&](double total_s) {
    if (o.json_path.empty()) return;
    std::vector<std::string> args(argv, argv + argc);
    nlohmann::json j = {{"program", "stimloop-bench-session-insilico"},
                        {"arguments", args},
                        {"v4", o.v4},
                        {"base", o.base},
                        {"session", o.session},
                        {"backend", server->backend_name()},
                        {"threads", o.threads},
                        {"steps", o.steps},
                        {"fit_images", o.fit_images},
                        {"repeats", o.repeats},
                        {"rate_at_p90", o.rate_at_p90},
                        {"split_seed", o.split_seed},
                        {"poisson_seed", o.poisson_seed},
                        {"total_s", total_s},
                        {"exit_code", exit_code},
                        {"summary", summary},
                        {"results", results}};
    std::ofstream(o.json_path) << j.dump(2) << "\n";
  };
  for (const char* which : {"b", "c"}) {
    if (o.experiment != "both" && o.experiment != which) continue;
    const bool b = which[0] == 'b';
    auto r = b ? sim::run_self_consistent(ctx, summary) : sim::run_across_models(ctx, summary);
    if (!r.ok()) {
      std::fprintf(stderr, "error: experiment (%s): %s\n", which, r.status().to_string().c_str());
      exit_code = 1;
      break;
    }
    results[b ? "b_self_consistent" : "c_across_models"] = std::move(*r);
    write_json(seconds_since(run_start));
  }
  const double total_s = seconds_since(run_start);

  std::printf("\n%-4s %-46s %6s %6s %6s %8s\n", "exp", "what", "median", "min", "max", "synth s");
  for (const auto& line : summary) std::printf("%s\n", line.c_str());
  std::printf(
      "(true response of the target neuron / its best true response over all %d pool images; "
      "(b) target %.1f, (c) goal %.1f)\ntotal %.1f s%s\n",
      images, sim::kTargetB, sim::kGoalC, total_s, exit_code == 0 ? "" : "; stopped by an error");
  write_json(total_s);
  server->shutdown();
  std::error_code ec;
  fs::remove_all(data_dir, ec);
  return exit_code;
}
