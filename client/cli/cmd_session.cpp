// `stimloop --server ADDR session open|next|report|get|list|close|export`: the closed-loop session
// calls from a shell (sessions live on a server, so these are remote only). Replies print as JSON
// (protobuf's JSON mapping); `next` writes each stimulus as <stimulus_id>.png into --out-dir and
// leaves the image bytes out of what it prints; `report` reads trials from a JSON file.
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "client/cli/commands.h"
#include "client/cli/remote.h"
#include "common/durable_file.h"
#include "common/file_checks.h"
#include "common/text_file.h"
#include "common/truncate.h"

namespace stimloop::cli {
namespace {

namespace v1 = ::stimloop::v1;

int print_message(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    return report_error(internal_error("cannot print the reply as JSON"));
  }
  std::cout << json;
  return kExitOk;
}

v1::StrategyKind strategy_kind(const std::string& name) {
  if (name == "synthesize") return v1::SYNTHESIZE;
  if (name == "adept") return v1::ADEPT;
  if (name == "committee") return v1::COMMITTEE;
  return v1::POOL;
}

// Trials as a JSON array: [{"stimulus_id": "...", "repeat_index": 0, "responses": [..],
// "aborted": false}, ...] (repeat_index and aborted optional).
StatusOr<v1::ReportResponsesRequest> read_trials(const std::string& path) {
  std::string text;
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else {
    ASSIGN_OR_RETURN(text, read_text_file(path, "--trials"));
  }
  v1::ReportResponsesRequest request;
  try {
    const auto j = nlohmann::json::parse(text);
    if (!j.is_array()) return invalid_argument("--trials: expected a JSON array of trials");
    for (std::size_t i = 0; i < j.size(); ++i) {
      const auto& t = j[i];
      auto* trial = request.add_trials();
      trial->set_stimulus_id(t.at("stimulus_id").get<std::string>());
      trial->set_repeat_index(t.value("repeat_index", 0));
      trial->set_aborted(t.value("aborted", false));
      for (const auto& r : t.at("responses")) trial->add_responses(r.get<double>());
    }
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(std::string("--trials: ") + e.what());
  }
  return request;
}

}  // namespace

Command add_session_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("session", "Closed-loop sessions on a server (needs --server)");
  cmd->require_subcommand(1);
  struct Options {
    std::string session, base_model, pool, rig, notes, readout = "ridge", block_id, out_dir,
                                                       strategy = "pool", trials;
    std::vector<std::string> channels, references;
    int folds = 0, min_stimuli = 0, count = 8, steps = 0;
    double deadline_ms = 0;
  };
  auto o = std::make_shared<Options>();
  auto* open = cmd->add_subcommand("open", "Open (or re-open) a session");
  auto* next = cmd->add_subcommand("next", "Ask for the next block of stimuli");
  auto* report = cmd->add_subcommand("report", "Report trials (a JSON array) and refit");
  auto* get = cmd->add_subcommand("get", "A session's state and calibration");
  auto* list = cmd->add_subcommand("list", "Every session on the server");
  auto* close = cmd->add_subcommand("close", "Close a session");
  auto* exported = cmd->add_subcommand(
      "export", "Write the session as a plain directory on the server (CSV, .npy, PNG, .keras)");
  for (auto* sub : {open, next, report, get, close, exported}) {
    sub->add_option("--session", o->session, "Session id")->required();
  }
  open->add_option("--base-model", o->base_model, "Model whose features are calibrated")
      ->required();
  open->add_option("--pool", o->pool, "A --pool NAME of the server")->required();
  open->add_option("--channel", o->channels, "Channel id (repeat, in recording order)")->required();
  open->add_option("--rig", o->rig, "Rig name");
  open->add_option("--notes", o->notes, "Free text");
  open->add_option("--readout", o->readout, "ridge or factorized")
      ->check(CLI::IsMember({"ridge", "factorized"}))
      ->capture_default_str();
  open->add_option("--folds", o->folds, "Cross-validation folds (0: 5)");
  open->add_option("--min-stimuli", o->min_stimuli, "Stimuli before the first fit (0: 10)");
  next->add_option("--count", o->count, "Stimuli in the block")->capture_default_str();
  next->add_option("--strategy", o->strategy, "pool, adept, committee or synthesize")
      ->check(CLI::IsMember({"pool", "adept", "committee", "synthesize"}))
      ->capture_default_str();
  next->add_option("--reference", o->references, "Pool image shown first (repeatable)");
  next->add_option("--steps", o->steps, "SYNTHESIZE: steps (0: the method's default)");
  next->add_option("--block-id", o->block_id, "Idempotency key: a retry returns the same block");
  next->add_option("--deadline-ms", o->deadline_ms, "Deadline (0: none)");
  next->add_option("--out-dir", o->out_dir, "Write each stimulus as <stimulus_id>.png here")
      ->required();
  report->add_option("--trials", o->trials, "JSON file of trials, or - for standard input")
      ->required();

  return {cmd, [&common, o, open, next, report, get, list, exported]() -> int {
            if (!common.is_remote()) {
              return report_error(
                  invalid_argument("session commands run on a server: give --server HOST:PORT"));
            }
            auto client = connect_remote(common);
            if (!client.ok()) return report_error(client.status());
            client::StimloopClient& c = **client;
            if (open->parsed()) {
              v1::OpenSessionRequest r;
              r.set_session_id(o->session);
              r.set_rig(o->rig);
              r.set_notes(o->notes);
              for (const auto& ch : o->channels) r.add_channels()->set_id(ch);
              r.set_base_model(o->base_model);
              r.set_pool(o->pool);
              r.mutable_calibration()->set_form(o->readout == "factorized" ? v1::FACTORIZED
                                                                           : v1::RIDGE);
              r.mutable_calibration()->set_folds(o->folds);
              r.mutable_calibration()->set_min_stimuli(o->min_stimuli);
              auto info = c.open_session(r);
              return info.ok() ? print_message(*info) : report_error(info.status());
            }
            if (next->parsed()) {
              v1::NextBlockRequest r;
              r.set_session_id(o->session);
              r.set_count(o->count);
              r.set_block_id(o->block_id);
              r.set_deadline_ms(o->deadline_ms);
              r.mutable_strategy()->set_kind(strategy_kind(o->strategy));
              r.mutable_strategy()->set_steps(o->steps);
              for (const auto& ref : o->references) r.mutable_strategy()->add_references(ref);
              auto block = c.next_block(r);
              if (!block.ok()) return report_error(block.status());
              std::error_code ec;
              std::filesystem::create_directories(o->out_dir, ec);
              for (auto& st : *block->mutable_stimuli()) {
                // Atomic: a PNG under its final name is always whole, even if this process is
                // killed mid-block.
                if (!is_plain_file_name(st.stimulus_id())) {
                  return report_error(
                      Status(StatusCode::kDataLoss,
                             "the server sent stimulus_id '" + truncated_id(st.stimulus_id(), 64) +
                                 "', which is not a plain file name: nothing written for it"));
                }
                const std::string path = o->out_dir + "/" + st.stimulus_id() + ".png";
                const auto& data = st.image().data();
                const std::span bytes(reinterpret_cast<const std::uint8_t*>(data.data()),
                                      data.size());
                if (Status written = write_file_atomically(path, bytes); !written.ok()) {
                  return report_error(written.with_context("--out-dir"));
                }
                st.mutable_image()->clear_data();  // written to the file, not printed
              }
              return print_message(*block);
            }
            if (report->parsed()) {
              auto r = read_trials(o->trials);
              if (!r.ok()) return report_error(r.status());
              r->set_session_id(o->session);
              auto reply = c.report_responses(*r);
              return reply.ok() ? print_message(*reply) : report_error(reply.status());
            }
            if (exported->parsed()) {
              auto reply = c.export_session(o->session);
              return reply.ok() ? print_message(*reply) : report_error(reply.status());
            }
            if (list->parsed()) {
              auto reply = c.list_sessions();
              return reply.ok() ? print_message(*reply) : report_error(reply.status());
            }
            // Otherwise `close` was parsed (one subcommand is required).
            auto info = get->parsed() ? c.get_session(o->session) : c.close_session(o->session);
            return info.ok() ? print_message(*info) : report_error(info.status());
          }};
}

}  // namespace stimloop::cli
