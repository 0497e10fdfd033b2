#include <cstdio>
#include <iostream>

#include "client/cli/commands.h"
#include "client/cli/remote.h"
#include "common/finite.h"

namespace stimloop::cli {
namespace {

struct PredictOptions {
  std::string model;
  std::vector<std::string> images;
  bool json = false;
  bool resize = false;
};

// Responses and the backend that computed them, in this process or on --server.
StatusOr<RemotePrediction> compute(const CommonOptions& common, const Model& model,
                                   const LoadedImages& images, int n,
                                   client::StimloopClient* client) {
  if (client != nullptr) return remote_predict(*client, common, model.info, images.raw, n);
  ASSIGN_OR_RETURN(auto backend, make_backend(common));
  ASSIGN_OR_RETURN(auto resident, backend->upload(model.network));
  RemotePrediction out;
  out.responses.resize(static_cast<std::size_t>(n) * model.info.num_outputs);
  RETURN_IF_ERROR(resident->forward(images.input, n, out.responses));
  RETURN_IF_ERROR(check_finite<float>(out.responses, "model " + model.info.id + ": responses"));
  out.backend = backend->name();
  return out;
}

int run_predict(const CommonOptions& common, const PredictOptions& opt) {
  std::unique_ptr<client::StimloopClient> client;
  std::shared_ptr<const Model> model;
  if (common.is_remote()) {
    auto connected = connect_remote(common);
    if (!connected.ok()) return report_error(connected.status());
    client = std::move(connected).value();
    auto remote = remote_model(*client, opt.model);
    if (!remote.ok()) return report_error(remote.status());
    model = *remote;
  } else {
    auto repo = open_repository(common);
    if (!repo.ok()) return report_error(repo.status());
    auto local = resolve_model(opt.model, **repo);
    if (!local.ok()) return report_error(local.status());
    model = *local;
  }
  auto images = load_images(opt.images, *model, opt.resize);
  if (!images.ok()) return report_error(images.status());
  const int n = static_cast<int>(opt.images.size());
  auto prediction = compute(common, *model, *images, n, client.get());
  if (!prediction.ok()) return report_error(prediction.status());
  const std::vector<float>& responses = prediction->responses;

  const ModelInfo& info = model->info;
  if (opt.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (int i = 0; i < n; ++i) {
      rows.push_back(std::vector<float>(responses.begin() + i * info.num_outputs,
                                        responses.begin() + (i + 1) * info.num_outputs));
    }
    nlohmann::json out = {{"model", info.id},
                          {"sha256", info.sha256},
                          {"outputs", info.num_outputs},
                          {"images", opt.images},
                          {"responses", rows},
                          {"demo", info.demo},
                          {"backend", prediction->backend}};
    std::cout << out.dump() << "\n";
    return kExitOk;
  }
  std::printf("# model %s (sha256 %.16s), %d output%s%s\n", info.id.c_str(), info.sha256.c_str(),
              info.num_outputs, info.num_outputs == 1 ? "" : "s",
              info.demo ? "  [DEMO: built-in, not a V4 neuron]" : "");
  for (int i = 0; i < n; ++i) {
    std::printf("%s", opt.images[i].c_str());
    for (int k = 0; k < info.num_outputs; ++k) {
      std::printf(" %.6g", responses[static_cast<std::size_t>(i) * info.num_outputs + k]);
    }
    std::printf("\n");
  }
  return kExitOk;
}

}  // namespace

Command add_predict_command(CLI::App& app, const CommonOptions& common) {
  auto* sub = app.add_subcommand("predict", "Model responses to images (PNG or JPEG, RGB)");
  auto opt = std::make_shared<PredictOptions>();
  sub->add_option("--model", opt->model, "Model id, 'demo', or a .keras path")->required();
  sub->add_flag("--json", opt->json, "Print one JSON object");
  sub->add_flag("--resize", opt->resize, "Rescale images of another size to the model's input");
  sub->add_option("images", opt->images, "Image files")->required();
  return {sub, [&common, opt] { return run_predict(common, *opt); }};
}

}  // namespace stimloop::cli
