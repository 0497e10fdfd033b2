// stimloop-bench-rig: the service's load benchmark. One rig client asks for a preferred stimulus
// (1000 cowley2026 steps asked, 250 ms deadline) every 500 ms while campaign clients keep the
// engine saturated with 1000-step CAMPAIGN stimuli. Reports the rig's latency percentiles (request
// sent to stimulus received), how many of its stimuli stopped at the deadline, and how many
// campaign stimuli finished meanwhile. The bar: rig p99 <= deadline + 20 ms.
//
// By default it starts an in-process server on 127.0.0.1 (real gRPC over loopback); --server
// measures a running one instead.
//
//   stimloop-bench-rig [--model demo] [--models DIR] [--duration-s 30] [--campaign-clients 2]
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "client/lib/stimloop_client.h"
#include "server/service/server.h"

namespace {

namespace v1 = ::stimloop::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string server, model = "demo", backend = "auto";
  std::vector<std::string> model_dirs;
  double duration_s = 30, interval_ms = 500, deadline_ms = 250, slack_ms = 20;
  int rig_steps = 1000, campaign_steps = 1000, campaign_clients = 2, campaign_count = 1;
  int threads = 0;
  bool json = false;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(rank);
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

v1::SynthesizeRequest preferred(const Options& o, v1::Priority priority, int steps, int count,
                                std::uint64_t seed) {
  v1::SynthesizeRequest r;
  r.set_model_id(o.model);
  r.set_priority(priority);
  r.set_result_encoding(priority == v1::RIG ? v1::RAW_RGB8 : v1::PNG);
  r.set_progress_every(100);
  auto* spec = r.mutable_spec();
  spec->set_objective(v1::MAX);
  spec->set_steps(steps);
  spec->set_count(count);
  spec->set_seed(seed);
  if (priority == v1::RIG) r.set_deadline_ms(o.deadline_ms);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stimloop-bench-rig: rig latency under a saturating campaign load"};
  Options o;
  app.add_option("--server", o.server, "HOST:PORT of a running server (default: start one here)");
  app.add_option("--models", o.model_dirs, "Model directory for the in-process server");
  app.add_option("--model", o.model, "Model id")->capture_default_str();
  app.add_option("--backend", o.backend, "In-process server backend")->capture_default_str();
  app.add_option("--threads", o.threads, "In-process server CPU threads (0: all)");
  app.add_option("--duration-s", o.duration_s, "Length of the measurement")->capture_default_str();
  app.add_option("--interval-ms", o.interval_ms, "Rig trial period")->capture_default_str();
  app.add_option("--deadline-ms", o.deadline_ms, "Rig deadline")->capture_default_str();
  app.add_option("--slack-ms", o.slack_ms, "Allowed p99 beyond the deadline")
      ->capture_default_str();
  app.add_option("--rig-steps", o.rig_steps, "Steps the rig asks for")->capture_default_str();
  app.add_option("--campaign-steps", o.campaign_steps, "Steps per campaign stimulus")
      ->capture_default_str();
  app.add_option("--campaign-clients", o.campaign_clients, "Concurrent campaign clients")
      ->capture_default_str();
  app.add_option("--campaign-count", o.campaign_count, "Stimuli per campaign request (seeds)")
      ->capture_default_str();
  app.add_flag("--json", o.json, "Print one JSON object");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<stimloop::service::StimloopServer> server;
  std::string address = o.server;
  if (address.empty()) {
    spdlog::set_level(spdlog::level::warn);
    stimloop::service::ServerOptions so;
    so.listen = "127.0.0.1:0";
    so.model_dirs = o.model_dirs;
    so.backend = o.backend;
    so.threads = o.threads;
    auto started = stimloop::service::StimloopServer::start(so);
    if (!started.ok()) {
      std::fprintf(stderr, "error: %s\n", started.status().to_string().c_str());
      return 1;
    }
    server = std::move(started).value();
    address = "127.0.0.1:" + std::to_string(server->port());
  }
  auto connect = [&] {
    stimloop::client::ClientOptions co;
    co.address = address;
    return std::move(stimloop::client::StimloopClient::connect(co)).value();
  };
  auto rig = connect();
  if (auto s = rig->wait_until_serving(std::chrono::seconds(60)); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
    return 1;
  }
  auto info = rig->get_model(o.model);
  if (!info.ok()) {
    std::fprintf(stderr, "error: %s\n", info.status().to_string().c_str());
    return 1;
  }

  std::atomic<bool> stop{false};
  std::atomic<int> campaign_done{0}, campaign_errors{0};
  std::mutex contexts_mutex;
  std::vector<grpc::ClientContext*> contexts(o.campaign_clients, nullptr);
  std::vector<std::thread> campaigns;
  for (int k = 0; k < o.campaign_clients; ++k) {
    campaigns.emplace_back([&, k] {
      auto c = connect();
      std::uint64_t seed = 1000u * static_cast<std::uint64_t>(k + 1);
      while (!stop.load()) {
        stimloop::client::CallOptions call;
        call.on_context = [&, k](grpc::ClientContext* ctx) {
          std::lock_guard lock(contexts_mutex);
          contexts[k] = ctx;
        };
        int stimuli = 0;
        const auto s = c->synthesize(
            preferred(o, v1::CAMPAIGN, o.campaign_steps, o.campaign_count, seed),
            [&](const v1::SynthesisEvent& e) {
              stimuli += e.kind() == v1::SynthesisEvent::STIMULUS && e.stop_reason() == "COMPLETED";
            },
            call);
        seed += static_cast<std::uint64_t>(o.campaign_count);
        if (s.ok()) {
          campaign_done += stimuli;
        } else if (!stop.load()) {
          ++campaign_errors;
        }
      }
    });
  }

  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // campaigns under way
  // Engine steps come from the in-process server's metrics (not available with --server).
  auto steps_total = [&]() -> double {
    if (!server) return 0.0;
    const std::string text = server->render_metrics();
    const std::string key = "\nstimloop_synthesis_steps_total ";
    const auto at = text.find(key);
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + key.size()));
  };
  const double steps_at_start = steps_total();
  long rig_steps = 0;
  std::vector<double> latency_ms;
  int deadline_stops = 0, rig_errors = 0, min_steps = 1 << 30, max_steps = 0;
  const auto start = Clock::now();
  auto next = start;
  std::uint64_t trial = 0;
  while (Clock::now() - start < std::chrono::duration<double>(o.duration_s)) {
    std::this_thread::sleep_until(next);
    next += std::chrono::microseconds(static_cast<long long>(o.interval_ms * 1000));
    const auto t0 = Clock::now();
    double stimulus_ms = -1;
    int steps = 0;
    std::string stop_reason;
    const auto s = rig->synthesize(
        preferred(o, v1::RIG, o.rig_steps, 1, trial++), [&](const v1::SynthesisEvent& e) {
          if (e.kind() != v1::SynthesisEvent::STIMULUS) return;
          stimulus_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          steps = e.steps_done();
          stop_reason = e.stop_reason();
        });
    if (!s.ok() || stimulus_ms < 0) {
      ++rig_errors;
      continue;
    }
    latency_ms.push_back(stimulus_ms);
    deadline_stops += stop_reason == "DEADLINE";
    rig_steps += steps;
    min_steps = std::min(min_steps, steps);
    max_steps = std::max(max_steps, steps);
  }
  const double measured_s = std::chrono::duration<double>(Clock::now() - start).count();
  const int campaigns_during = campaign_done.load();
  const double campaign_steps_per_s =
      server ? (steps_total() - steps_at_start - static_cast<double>(rig_steps)) / measured_s : 0.0;
  stop = true;
  {
    std::lock_guard lock(contexts_mutex);
    for (auto* ctx : contexts) {
      if (ctx != nullptr) ctx->TryCancel();
    }
  }
  for (auto& t : campaigns) t.join();

  const double p50 = percentile(latency_ms, 50), p99 = percentile(latency_ms, 99);
  const double worst =
      latency_ms.empty() ? 0 : *std::max_element(latency_ms.begin(), latency_ms.end());
  const bool pass = !latency_ms.empty() && rig_errors == 0 && p99 <= o.deadline_ms + o.slack_ms;
  const std::string backend = server ? server->backend_name() : "remote";
  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"backend", backend},
                        {"macs_per_image", info->macs_per_image()},
                        {"duration_s", measured_s},
                        {"rig_requests", latency_ms.size() + rig_errors},
                        {"rig_errors", rig_errors},
                        {"rig_p50_ms", p50},
                        {"rig_p99_ms", p99},
                        {"rig_max_ms", worst},
                        {"rig_deadline_stops", deadline_stops},
                        {"rig_steps_min", min_steps},
                        {"rig_steps_max", max_steps},
                        {"campaign_clients", o.campaign_clients},
                        {"campaign_stimuli_finished", campaigns_during},
                        {"campaign_steps_per_s", campaign_steps_per_s},
                        {"campaign_errors", campaign_errors.load()},
                        {"deadline_ms", o.deadline_ms},
                        {"pass", pass}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "model %s (%lld MACs/image), backend %s, %.1f s, %d campaign clients x %d stimuli "
        "of %d steps\n",
        o.model.c_str(), static_cast<long long>(info->macs_per_image()), backend.c_str(),
        measured_s, o.campaign_clients, o.campaign_count, o.campaign_steps);
    std::printf("rig: %zu requests (%d errors), %d stopped at the deadline, steps %d..%d\n",
                latency_ms.size() + rig_errors, rig_errors, deadline_stops, min_steps, max_steps);
    std::printf("rig latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms (bar: p99 <= %.0f ms)\n", p50,
                p99, worst, o.deadline_ms + o.slack_ms);
    std::printf("campaign stimuli finished meanwhile: %d (%d errors); campaign steps/s %.1f\n",
                campaigns_during, campaign_errors.load(), campaign_steps_per_s);
    std::printf("%s\n", pass ? "PASS" : "FAIL");
  }
  if (server) server->shutdown();
  return pass ? 0 : 2;
}
