#include <cstdio>
#include <iostream>

#include "client/cli/commands.h"
#include "client/cli/remote.h"

namespace stimloop::cli {
namespace {

std::string join_ints(const std::vector<int>& values) {
  std::string s;
  for (std::size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + std::to_string(values[i]);
  return s;
}

}  // namespace

Command add_models_command(CLI::App& app, const CommonOptions& common) {
  auto* sub = app.add_subcommand("models",
                                 "List the models available (id, outputs, shapes, "
                                 "filters, parameters, MACs, SHA-256)");
  auto json_output = std::make_shared<bool>(false);
  sub->add_flag("--json", *json_output, "Print one JSON object");
  return {sub, [&common, json_output]() -> int {
            StatusOr<std::vector<std::shared_ptr<const Model>>> models =
                invalid_argument("no models");
            std::string directory;
            if (common.is_remote()) {
              auto client = connect_remote(common);
              if (!client.ok()) return report_error(client.status());
              models = remote_models(**client);
              directory = "server:" + common.remote.server;
            } else {
              auto repo = open_repository(common);
              if (!repo.ok()) return report_error(repo.status());
              models = (*repo)->load_all();
              directory = (*repo)->directory();
            }
            if (!models.ok()) return report_error(models.status());
            if (*json_output) {
              nlohmann::json list = nlohmann::json::array();
              for (const auto& m : *models) list.push_back(model_info_json(m->info));
              nlohmann::json out = {{"directory", directory}, {"models", list}};
              std::cout << out.dump(2) << "\n";
              return kExitOk;
            }
            std::printf("%-36s %7s %-11s %-22s %8s %12s  %s\n", "id", "outputs", "input", "filters",
                        "params", "MACs/image", "sha256");
            for (const auto& m : *models) {
              const ModelInfo& i = m->info;
              const std::string input = std::to_string(i.in_h) + "x" + std::to_string(i.in_w) +
                                        "x" + std::to_string(i.in_c);
              std::printf("%-36s %7d %-11s %-22s %8lld %12lld  %.16s%s\n", i.id.c_str(),
                          i.num_outputs, input.c_str(), join_ints(i.filters).c_str(),
                          static_cast<long long>(i.parameters),
                          static_cast<long long>(i.macs_per_image), i.sha256.c_str(),
                          i.demo ? "  [DEMO: built-in, not a V4 neuron]" : "");
            }
            if (directory.empty()) {
              std::printf("(no model directory: pass --models DIR or set STIMLOOP_MODELS)\n");
            }
            return kExitOk;
          }};
}

}  // namespace stimloop::cli
