// stimloop: the command-line tool. Local mode runs models in this process; with --server ADDR,
// `models`, `predict` and `synthesize` run on a stimloop-server instead, with the same flags and
// the same output.
#include <CLI/CLI.hpp>

#include "client/cli/commands.h"

int main(int argc, char** argv) {
  using namespace stimloop::cli;
  CLI::App app{"stimloop: compact V4 models -- predictions, input gradients, stimuli"};
  app.require_subcommand(1);
  app.set_version_flag("--version", stimloop_version());
  CommonOptions common;
  app.add_option("--models", common.models_dir,
                 "Directory of .keras models (default: $STIMLOOP_MODELS, else the built-in demo)");
  app.add_option("--backend", common.backend,
                 "Compute backend: cpu, cuda (stimloop's kernels), cudnn (cuDNN's convolutions), "
                 "cudnn-tf32 (cuDNN with TF32 tensor cores: faster, ~1e-3 less exact), or auto "
                 "(the GPU when one is usable)")
      ->capture_default_str();
  app.add_option("--threads", common.threads, "CPU threads (0 = all cores)")->capture_default_str();

  app.add_option("--server", common.remote.server,
                 "HOST:PORT of a stimloop-server: run models/predict/synthesize there");
  app.add_option("--tls-ca", common.remote.tls_ca, "PEM CA file: connect with TLS");
  app.add_option("--tls-cert", common.remote.tls_cert, "PEM client certificate (mutual TLS)");
  app.add_option("--tls-key", common.remote.tls_key, "PEM key of --tls-cert");
  app.add_option("--tls-server-name", common.remote.tls_server_name,
                 "Name to expect in the server's certificate (default: the host of --server)");
  app.add_option("--token-file", common.remote.token_file, "File holding the bearer token");
  app.add_option("--priority", common.remote.priority, "Remote queue: rig, interactive, campaign")
      ->check(CLI::IsMember({"rig", "interactive", "campaign"}))
      ->capture_default_str();

  app.fallthrough();  // global flags may also follow the subcommand: `predict --models DIR`

  const Command commands[] = {
      add_models_command(app, common),     add_predict_command(app, common),
      add_gradient_command(app, common),   add_info_command(app, common),
      add_test_image_command(app, common), add_synthesize_command(app, common),
      add_replay_command(app, common),    add_session_command(app, common)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (const Command& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  return kExitFailure;
}
