#include "client/rig_sim/virtual_neurons.h"

#include <cmath>

#include "models/model_repository.h"
#include "models/preprocess.h"
#include "server/synthesis/rng.h"

namespace stimloop::rigsim {

StatusOr<NeuronSpec> parse_neuron(const std::string& text) {
  NeuronSpec spec;
  const auto colon = text.rfind(':');
  spec.model = text.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      std::size_t used = 0;
      spec.output = std::stoi(text.substr(colon + 1), &used);
      if (used != text.size() - colon - 1 || spec.output < 0) throw std::invalid_argument("");
    } catch (const std::exception&) {
      return invalid_argument("--neuron: '" + text.substr(0, 200) +
                              "' is not MODEL or MODEL:OUTPUT (OUTPUT a number >= 0)");
    }
  }
  if (spec.model.empty()) return invalid_argument("--neuron: no model in '" + text + "'");
  return spec;
}

StatusOr<std::unique_ptr<VirtualNeurons>> VirtualNeurons::load(const std::vector<NeuronSpec>& specs,
                                                               const std::string& models_dir,
                                                               double gain) {
  if (specs.empty()) return invalid_argument("--neuron: at least one virtual neuron is needed");
  if (!(gain > 0) || !std::isfinite(gain)) return invalid_argument("--gain must be > 0");
  auto v = std::unique_ptr<VirtualNeurons>(new VirtualNeurons());
  v->gain_ = gain;
  v->backend_ = make_cpu_backend();
  ASSIGN_OR_RETURN(auto repository, ModelRepository::open(default_models_directory(models_dir)));
  for (const NeuronSpec& spec : specs) {
    Neuron n;
    ASSIGN_OR_RETURN(n.model, resolve_model(spec.model, *repository));
    if (spec.output >= n.model->info.num_outputs) {
      return out_of_range("--neuron " + spec.model + ":" + std::to_string(spec.output) +
                          ": the model has " + std::to_string(n.model->info.num_outputs) +
                          " outputs");
    }
    ASSIGN_OR_RETURN(n.network, v->backend_->upload(n.model->network));
    n.output = spec.output;
    v->neurons_.push_back(std::move(n));
  }
  return v;
}

StatusOr<std::vector<double>> VirtualNeurons::rates(const std::vector<std::uint8_t>& pixels,
                                                    int height, int width) {
  std::vector<double> out;
  for (Neuron& n : neurons_) {
    const ModelInfo& info = n.model->info;
    if (height != info.in_h || width != info.in_w) {
      return invalid_argument("a stimulus of " + std::to_string(width) + "x" +
                              std::to_string(height) + " for neuron model " + info.id +
                              " that takes " + std::to_string(info.in_w) + "x" +
                              std::to_string(info.in_h));
    }
    const std::vector<float> input = recenter_rgb8(pixels, n.model->channel_means);
    std::vector<float> outputs(info.num_outputs);
    RETURN_IF_ERROR(n.network->forward(input, 1, outputs));
    out.push_back(gain_ * std::max(0.0, static_cast<double>(outputs[n.output])));
  }
  return out;
}

int poisson(double rate, std::uint64_t& state) {
  synthesis::Rng rng(state++);
  if (rate <= 0) return 0;
  if (rate > 60) {  // normal approximation: Knuth's product underflows for large rates
    const double u1 = std::max(rng.uniform(), 1e-300), u2 = rng.uniform();
    const double z = std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    return std::max(0, static_cast<int>(std::lround(rate + std::sqrt(rate) * z)));
  }
  const double limit = std::exp(-rate);
  int k = 0;
  for (double p = rng.uniform(); p > limit; p *= rng.uniform()) ++k;
  return k;
}

}  // namespace stimloop::rigsim
