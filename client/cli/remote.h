// The CLI's remote mode: the same commands, run on a stimloop-server through the client
// library. Each function mirrors its local counterpart's output exactly.
#pragma once

#include <memory>
#include <vector>

#include "client/cli/cli_common.h"
#include "client/cli/synthesis_job.h"
#include "client/lib/stimloop_client.h"

namespace stimloop::cli {

StatusOr<std::unique_ptr<client::StimloopClient>> connect_remote(const CommonOptions& common);

// A Model holding the server's description of `id` (no network): enough to load images for it.
StatusOr<std::shared_ptr<const Model>> remote_model(client::StimloopClient& client,
                                                    const std::string& id);
StatusOr<std::vector<std::shared_ptr<const Model>>> remote_models(client::StimloopClient& client);

struct RemotePrediction {
  std::vector<float> responses;  // images x outputs
  std::string backend;
};
StatusOr<RemotePrediction> remote_predict(client::StimloopClient& client,
                                          const CommonOptions& common, const ModelInfo& model,
                                          const std::vector<std::uint8_t>& raw, int n);

StatusOr<std::vector<SynthesisOutput>> remote_synthesis_job(
    client::StimloopClient& client, const CommonOptions& common,
    const synthesis::SynthesisRequest& request, const Model& model, bool show_progress);

}  // namespace stimloop::cli
