#include "models/keras_import.h"

#include <filesystem>

#include "models/compile_network.h"
#include "models/hdf5_weights.h"
#include "models/keras_archive.h"
#include "models/keras_config.h"

namespace stimloop {

std::int64_t KerasGraph::parameter_count() const {
  std::int64_t total = 0;
  for (const auto& layer : layers) {
    for (const auto& shape : expected_var_shapes(layer)) {
      std::int64_t n = 1;
      for (auto d : shape) n *= d;
      total += n;
    }
  }
  return total;
}

StatusOr<KerasGraph> load_keras_graph(const std::string& path, const ImportLimits& limits) {
  auto archive = read_keras_archive(path, limits);
  if (!archive.ok()) return archive.status().with_context(path);
  auto graph = parse_keras_config(archive->config_json, limits);
  if (!graph.ok()) return graph.status().with_context(path);
  graph->source = path;
  graph->sha256 = archive->sha256;
  RETURN_IF_ERROR(read_keras_weights(archive->weights_h5, *graph).with_context(path));
  return graph;
}

ModelInfo describe_model(const KerasGraph& graph, const Network& network) {
  ModelInfo info;
  info.source = graph.source;
  info.sha256 = graph.sha256;
  info.in_h = graph.in_h, info.in_w = graph.in_w, info.in_c = graph.in_c;
  info.num_outputs = static_cast<int>(network.num_outputs());
  for (const auto& layer : graph.layers) {
    if (layer.type == KerasLayerType::kConv2D || layer.type == KerasLayerType::kSeparableConv2D) {
      info.filters.push_back(layer.filters);
    }
  }
  info.parameters = graph.parameter_count();
  info.macs_per_image = network.macs();
  return info;
}

StatusOr<std::shared_ptr<const Model>> load_keras_model(const std::string& path,
                                                        const std::string& id,
                                                        const ImportLimits& limits) {
  ASSIGN_OR_RETURN(KerasGraph graph, load_keras_graph(path, limits));
  auto network = compile_network(graph);
  if (!network.ok()) return network.status().with_context(path);
  auto model = std::make_shared<Model>();
  model->info = describe_model(graph, *network);
  model->info.id = id.empty() ? std::filesystem::path(path).stem().string() : id;
  model->info.description =
      model->info.num_outputs == 1
          ? "compact model (one neuron)"
          : "shared compact model (" + std::to_string(model->info.num_outputs) + " outputs)";
  model->network = std::make_shared<const Network>(std::move(network).value());
  return std::shared_ptr<const Model>(std::move(model));
}

}  // namespace stimloop
