// stimloop-bench-queue-deadline: deadlines in a starved queue. INTERACTIVE clients keep the
// engine saturated with long syntheses while, one after another, CAMPAIGN requests with
// deadlines wait behind them: a Synthesize (--synthesize-deadline-ms), a Predict
// (--predict-deadline-ms) and a Predict with deadline_ms = 1. Each must answer by its deadline +
// --slack-ms (a synthesis with stop reason DEADLINE, a Predict with DEADLINE_EXCEEDED). Prints
// each kind's latency and overrun (max, p99) and exits 2 when any answer was late or wrong.
//
//   stimloop-bench-queue-deadline [--trials 20] [--interactive-clients 2] [--model demo]
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "client/lib/stimloop_client.h"
#include "server/service/server.h"

namespace {

namespace v1 = ::stimloop::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model = "demo", backend = "cpu";
  std::vector<std::string> model_dirs;
  int trials = 20, interactive_clients = 2, threads = 0;
  double synthesize_deadline_ms = 1000, predict_deadline_ms = 500, slack_ms = 150;
};

struct Kind {
  std::string name;
  double deadline_ms;
  std::vector<double> latency_ms;
  int wrong = 0;  // answers other than the promised one
};

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stimloop-bench-queue-deadline: CAMPAIGN deadlines behind INTERACTIVE load"};
  Options o;
  app.add_option("--models", o.model_dirs, "Model directory (default: the demo models)");
  app.add_option("--model", o.model, "Model id")->capture_default_str();
  app.add_option("--backend", o.backend, "Server backend")->capture_default_str();
  app.add_option("--threads", o.threads, "Server CPU threads (0: all)");
  app.add_option("--trials", o.trials, "Requests of each kind")->capture_default_str();
  app.add_option("--interactive-clients", o.interactive_clients, "Saturating clients")
      ->capture_default_str();
  app.add_option("--synthesize-deadline-ms", o.synthesize_deadline_ms)->capture_default_str();
  app.add_option("--predict-deadline-ms", o.predict_deadline_ms)->capture_default_str();
  app.add_option("--slack-ms", o.slack_ms, "Allowed beyond a deadline")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  spdlog::set_level(spdlog::level::err);  // every expired request would log a warning
  stimloop::service::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.model_dirs = o.model_dirs;
  so.backend = o.backend;
  so.threads = o.threads;
  so.data_dir = "/tmp/stimloop-bench-queue-deadline-" + std::to_string(::getpid());
  auto started = stimloop::service::StimloopServer::start(so);
  if (!started.ok()) {
    std::fprintf(stderr, "error: %s\n", started.status().to_string().c_str());
    return 1;
  }
  auto server = std::move(started).value();
  auto connect = [&] {
    stimloop::client::ClientOptions co;
    co.address = "127.0.0.1:" + std::to_string(server->port());
    return std::move(stimloop::client::StimloopClient::connect(co)).value();
  };
  auto probe = connect();
  auto info = probe->get_model(o.model);
  if (!info.ok()) {
    std::fprintf(stderr, "error: %s\n", info.status().to_string().c_str());
    return 1;
  }

  std::atomic<bool> stop{false};
  std::atomic<int> progress{0};
  std::mutex contexts_mutex;
  std::vector<grpc::ClientContext*> contexts(o.interactive_clients, nullptr);
  std::vector<std::thread> load;
  for (int k = 0; k < o.interactive_clients; ++k) {
    load.emplace_back([&, k] {
      auto c = connect();
      while (!stop.load()) {
        v1::SynthesizeRequest r;
        r.set_model_id(o.model);
        r.set_priority(v1::INTERACTIVE);
        r.mutable_spec()->set_objective(v1::MAX);
        r.mutable_spec()->set_steps(1000000);
        r.mutable_spec()->set_seed(static_cast<std::uint64_t>(k));
        stimloop::client::CallOptions call;
        call.on_context = [&, k](grpc::ClientContext* ctx) {
          std::lock_guard lock(contexts_mutex);
          contexts[k] = ctx;
        };
        (void)c->synthesize(
            r,
            [&](const v1::SynthesisEvent& e) {
              progress += e.kind() == v1::SynthesisEvent::PROGRESS;
            },
            call);
      }
    });
  }
  while (progress.load() < 2 * o.interactive_clients) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  std::vector<std::uint8_t> pixels(
      static_cast<std::size_t>(info->input_height()) * info->input_width() * 3, 128);
  Kind synth{"synthesize", o.synthesize_deadline_ms, {}, 0};
  Kind predict{"predict", o.predict_deadline_ms, {}, 0};
  Kind instant{"predict deadline_ms=1", 1, {}, 0};
  auto ask_predict = [&](Kind& kind) {
    v1::PredictRequest r;
    r.add_model_ids(o.model);
    r.set_priority(v1::CAMPAIGN);
    r.set_deadline_ms(kind.deadline_ms);
    *r.add_images() =
        stimloop::client::raw_image(pixels, info->input_height(), info->input_width());
    const auto t0 = Clock::now();
    const auto answer = probe->predict(r);
    kind.latency_ms.push_back(ms_since(t0));
    kind.wrong += answer.status().code() != stimloop::StatusCode::kDeadlineExceeded;
  };
  for (int t = 0; t < o.trials; ++t) {
    v1::SynthesizeRequest r;
    r.set_model_id(o.model);
    r.set_priority(v1::CAMPAIGN);
    r.set_deadline_ms(synth.deadline_ms);
    r.mutable_spec()->set_objective(v1::MAX);
    r.mutable_spec()->set_steps(1000000);
    std::string stop_reason;
    const auto t0 = Clock::now();
    const auto s = probe->synthesize(r, [&](const v1::SynthesisEvent& e) {
      if (e.kind() == v1::SynthesisEvent::DONE) stop_reason = e.stop_reason();
    });
    synth.latency_ms.push_back(ms_since(t0));
    synth.wrong += !s.ok() || stop_reason != "DEADLINE";
    ask_predict(predict);
    ask_predict(instant);
  }
  stop = true;
  {
    std::lock_guard lock(contexts_mutex);
    for (auto* ctx : contexts) {
      if (ctx != nullptr) ctx->TryCancel();
    }
  }
  for (auto& t : load) t.join();

  bool pass = true;
  std::printf(
      "model %s, backend %s, %d INTERACTIVE clients saturating; %d trials; bar: deadline "
      "+ %.0f ms\n",
      o.model.c_str(), server->backend_name().c_str(), o.interactive_clients, o.trials, o.slack_ms);
  for (Kind* k : {&synth, &predict, &instant}) {
    std::sort(k->latency_ms.begin(), k->latency_ms.end());
    const double worst = k->latency_ms.back();
    const double p99 = k->latency_ms[std::min(
        k->latency_ms.size() - 1, static_cast<std::size_t>(0.99 * double(k->latency_ms.size())))];
    const bool ok = k->wrong == 0 && worst <= k->deadline_ms + o.slack_ms;
    pass = pass && ok;
    std::printf(
        "CAMPAIGN %-22s deadline %6.0f ms: p50 %7.1f ms, p99 %7.1f ms, max %7.1f ms "
        "(overrun %+6.1f ms), wrong answers %d  %s\n",
        k->name.c_str(), k->deadline_ms, k->latency_ms[k->latency_ms.size() / 2], p99, worst,
        worst - k->deadline_ms, k->wrong, ok ? "ok" : "LATE/WRONG");
  }
  std::printf("%s\n", pass ? "PASS" : "FAIL");
  server->shutdown();
  std::error_code ec;
  std::filesystem::remove_all(so.data_dir, ec);
  return pass ? 0 : 2;
}
