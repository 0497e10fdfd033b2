#include "server/sessions/readout_model.h"

#include <cstring>

#include "common/sha256.h"

namespace stimloop::sessions {
namespace {

LayerParams pointwise(int h, int w, int in_c, int out_c, bool bias) {
  LayerParams p;
  p.kind = LayerKind::kPointwise;
  p.in_h = p.out_h = h;
  p.in_w = p.out_w = w;
  p.in_c = in_c, p.out_c = out_c;
  p.has_bias = bias;
  return p;
}

// An h x w 'valid' depthwise over a `channels`-channel map: one spatial mask per channel.
LayerParams spatial_mask(int h, int w, int channels) {
  LayerParams p;
  p.kind = LayerKind::kDepthwise;
  p.in_h = h, p.in_w = w, p.in_c = channels;
  p.out_h = p.out_w = 1, p.out_c = channels;
  p.k_h = h, p.k_w = w;
  p.has_bias = true;
  return p;
}

std::int64_t parameter_count(const Network& net) {
  std::int64_t n = 0;
  for (const auto& l : net.layers) n += l.params.weight_count() + l.params.bias_count();
  return n;
}

// Identity of a calibrated model: the base's digest and the readout's exact floats.
std::string readout_digest(const Model& base, const Network& net, std::size_t first_readout) {
  std::vector<std::uint8_t> bytes(base.info.sha256.begin(), base.info.sha256.end());
  for (std::size_t i = first_readout; i < net.layers.size(); ++i) {
    for (const auto* v : {&net.layers[i].weights, &net.layers[i].bias}) {
      const auto* p = reinterpret_cast<const std::uint8_t*>(v->data());
      bytes.insert(bytes.end(), p, p + v->size() * sizeof(float));
    }
  }
  return sha256_hex(bytes);
}

}  // namespace

StatusOr<FeatureExtractor> split_at_readout(const Model& base) {
  const Network& net = *base.network;
  int last_relu = -1;
  for (int i = 0; i + 1 < static_cast<int>(net.layers.size()); ++i) {
    if (net.layers[i].params.relu) last_relu = i;
  }
  if (last_relu < 0) {
    return failed_precondition("model '" + base.info.id +
                               "' has no ReLU layer before its last layer: no features to fit a "
                               "readout on");
  }
  const LayerParams& out = net.layers[last_relu].params;
  if (out.out_h < 1 || out.out_w < 1 || out.out_c < 1) {
    return failed_precondition("model '" + base.info.id + "': empty feature map");
  }
  auto prefix = std::make_shared<Network>();
  prefix->in_h = net.in_h, prefix->in_w = net.in_w, prefix->in_c = net.in_c;
  prefix->layers.assign(net.layers.begin(), net.layers.begin() + last_relu + 1);
  return FeatureExtractor{std::move(prefix), FeatureShape{out.out_h, out.out_w, out.out_c}};
}

std::shared_ptr<const Model> session_model(const Model& base, const FeatureExtractor& features,
                                           const std::vector<ChannelFit>& fits,
                                           const std::string& id, const std::string& description) {
  const FeatureShape& s = features.shape;
  const int outputs = static_cast<int>(fits.size());
  auto net = std::make_shared<Network>(*features.prefix);
  const std::size_t first_readout = net->layers.size();
  std::vector<float> bias(outputs);
  for (int k = 0; k < outputs; ++k) bias[k] = static_cast<float>(fits[k].bias);
  // Weights are (in, out) row-major: input i's weights for every output, side by side.
  auto interleave = [&](auto member, std::size_t rows) {
    std::vector<float> w(rows * outputs);
    for (std::size_t i = 0; i < rows; ++i) {
      for (int k = 0; k < outputs; ++k) w[i * outputs + k] = (fits[k].*member)[i];
    }
    return w;
  };
  if (fits.front().form == ReadoutForm::kRidge) {
    const auto p = static_cast<std::size_t>(s.size());
    net->layers.push_back(NetworkLayer{"calibrated_dense",
                                       pointwise(1, 1, static_cast<int>(p), outputs, true),
                                       interleave(&ChannelFit::weights, p), bias});
  } else {
    net->layers.push_back(NetworkLayer{"calibrated_features",
                                       pointwise(s.h, s.w, s.c, outputs, false),
                                       interleave(&ChannelFit::feature_weights, s.c),
                                       {}});
    net->layers.push_back(NetworkLayer{
        "calibrated_spatial_mask", spatial_mask(s.h, s.w, outputs),
        interleave(&ChannelFit::spatial_mask, static_cast<std::size_t>(s.h) * s.w), bias});
  }
  auto model = std::make_shared<Model>();
  model->channel_means = base.channel_means;
  model->info = base.info;
  model->info.id = id;
  model->info.source = "calibrated on " + base.info.id;
  model->info.description = description;
  model->info.num_outputs = outputs;
  model->info.parameters = parameter_count(*net);
  model->info.macs_per_image = net->macs();
  model->info.sha256 = readout_digest(base, *net, first_readout);
  model->network = std::move(net);
  return model;
}

std::shared_ptr<const Model> calibrated_model(const Model& base, const FeatureExtractor& features,
                                              const ChannelFit& fit, const std::string& id,
                                              const std::string& description) {
  return session_model(base, features, {fit}, id, description);
}

}  // namespace stimloop::sessions
