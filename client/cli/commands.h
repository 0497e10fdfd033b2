// The local subcommands of `stimloop`. Each registers its flags on the app and returns a
// function that runs it, so main() stays a list.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "client/cli/cli_common.h"

namespace stimloop::cli {

struct Command {
  CLI::App* app = nullptr;   // the subcommand
  std::function<int()> run;  // runs it after parsing; returns the exit code
};

Command add_models_command(CLI::App& app, const CommonOptions& common);
Command add_predict_command(CLI::App& app, const CommonOptions& common);
Command add_gradient_command(CLI::App& app, const CommonOptions& common);
Command add_info_command(CLI::App& app, const CommonOptions& common);
Command add_test_image_command(CLI::App& app, const CommonOptions& common);
Command add_synthesize_command(CLI::App& app, const CommonOptions& common);
Command add_replay_command(CLI::App& app, const CommonOptions& common);
// Remote only: closed-loop sessions on a server.
Command add_session_command(CLI::App& app, const CommonOptions& common);

}  // namespace stimloop::cli
