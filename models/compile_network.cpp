#include "models/compile_network.h"

#include <algorithm>
#include <cmath>

#include "kernels/layer_params.h"

namespace stimloop {
namespace {

LayerParams conv_params(const KerasLayer& l, LayerKind kind, int out_c) {
  LayerParams p;
  p.kind = kind;
  p.in_h = l.in_h, p.in_w = l.in_w, p.in_c = l.in_c;
  p.out_h = l.out_h, p.out_w = l.out_w, p.out_c = out_c;
  p.k_h = l.k_h, p.k_w = l.k_w;
  p.stride_h = l.stride_h, p.stride_w = l.stride_w;
  if (l.same_padding) {
    p.pad_top = same_padding(l.in_h, l.k_h, l.stride_h).pad_before;
    p.pad_left = same_padding(l.in_w, l.k_w, l.stride_w).pad_before;
  }
  return p;
}

LayerParams pointwise_params(int h, int w, int in_c, int out_c) {
  LayerParams p;
  p.kind = LayerKind::kPointwise;
  p.in_h = p.out_h = h;
  p.in_w = p.out_w = w;
  p.in_c = in_c, p.out_c = out_c;
  return p;
}

// Folds y = gamma * (x - mean) / sqrt(var + eps) + beta into the layer that produced x, whose
// output channel is the fastest-varying weight index. Done in double, rounded once to float.
// A variance + epsilon that is not positive would make every response NaN: refused, naming the
// channel (`where` names the layer).
Status fold_batchnorm(const KerasLayer& bn, NetworkLayer& target, const std::string& where) {
  const auto& gamma = bn.vars[0].values;
  const auto& beta = bn.vars[1].values;
  const auto& mean = bn.vars[2].values;
  const auto& var = bn.vars[3].values;
  const int c = target.params.out_c;
  if (!target.params.has_bias) {
    target.params.has_bias = true;
    target.bias.assign(c, 0.0f);
  }
  for (int ch = 0; ch < c; ++ch) {
    // The loader refuses such files; graphs built in memory are checked here.
    if (!(static_cast<double>(var[ch]) + bn.epsilon > 0.0)) {
      return data_loss(where + ": moving_variance + epsilon of channel " + std::to_string(ch) +
                       " is not positive");
    }
  }
  for (int ch = 0; ch < c; ++ch) {
    const double scale =
        static_cast<double>(gamma[ch]) / std::sqrt(static_cast<double>(var[ch]) + bn.epsilon);
    for (std::size_t i = ch; i < target.weights.size(); i += c) {
      target.weights[i] = static_cast<float>(target.weights[i] * scale);
    }
    target.bias[ch] =
        static_cast<float>((static_cast<double>(target.bias[ch]) - mean[ch]) * scale + beta[ch]);
  }
  return Status::Ok();
}

// Folding can overflow float even from finite weights (a tiny variance): no layer may hold a
// weight or bias that is not finite, or responses would be NaN or infinite.
Status check_finite(const NetworkLayer& layer) {
  auto finite = [](const std::vector<float>& values) {
    return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
  };
  if (finite(layer.weights) && finite(layer.bias)) return Status::Ok();
  return data_loss("layer '" + layer.name +
                   "': weights are NaN or infinite after BatchNorm folding (a variance close to "
                   "zero, or huge weights)");
}

}  // namespace

StatusOr<Network> compile_network(const KerasGraph& graph) {
  Network net;
  net.in_h = graph.in_h, net.in_w = graph.in_w, net.in_c = graph.in_c;
  // Whether the last op's output is still the raw linear output (BN may fold into it).
  bool last_is_linear = false;
  for (const KerasLayer& l : graph.layers) {
    const std::string where = "layer '" + l.name + "' (" + l.class_name + ")";
    switch (l.type) {
      case KerasLayerType::kConv2D: {
        NetworkLayer op{
            l.name, conv_params(l, LayerKind::kConv2D, l.filters), l.vars[0].values, {}};
        // A 1x1, stride-1 convolution is a per-pixel matmul with the same weight layout.
        if (l.k_h == 1 && l.k_w == 1 && l.stride_h == 1 && l.stride_w == 1) {
          op.params = pointwise_params(l.in_h, l.in_w, l.in_c, l.filters);
        }
        op.params.has_bias = l.use_bias;
        if (l.use_bias) op.bias = l.vars[1].values;
        net.layers.push_back(std::move(op));
        last_is_linear = true;
        break;
      }
      case KerasLayerType::kSeparableConv2D: {
        NetworkLayer dw{l.name + "/depthwise",
                        conv_params(l, LayerKind::kDepthwise, l.in_c),
                        l.vars[0].values,
                        {}};
        dw.params.has_bias = false;
        NetworkLayer pw{l.name + "/pointwise",
                        pointwise_params(l.out_h, l.out_w, l.in_c, l.filters),
                        l.vars[1].values,
                        {}};
        pw.params.has_bias = l.use_bias;
        if (l.use_bias) pw.bias = l.vars[2].values;
        net.layers.push_back(std::move(dw));
        net.layers.push_back(std::move(pw));
        last_is_linear = true;
        break;
      }
      case KerasLayerType::kDepthwiseConv2D: {
        NetworkLayer dw{
            l.name, conv_params(l, LayerKind::kDepthwise, l.in_c), l.vars[0].values, {}};
        dw.params.has_bias = l.use_bias;
        if (l.use_bias) dw.bias = l.vars[1].values;
        net.layers.push_back(std::move(dw));
        last_is_linear = true;
        break;
      }
      case KerasLayerType::kDense: {
        NetworkLayer fc{
            l.name, pointwise_params(l.in_h, l.in_w, l.in_c, l.filters), l.vars[0].values, {}};
        fc.params.has_bias = l.use_bias;
        if (l.use_bias) fc.bias = l.vars[1].values;
        net.layers.push_back(std::move(fc));
        last_is_linear = true;
        break;
      }
      case KerasLayerType::kBatchNormalization:
        if (!last_is_linear || net.layers.back().params.out_c != l.in_c) {
          return unimplemented(where +
                               ": BatchNormalization must directly follow a convolution or Dense "
                               "layer (it is folded into it)");
        }
        RETURN_IF_ERROR(fold_batchnorm(l, net.layers.back(), where));
        break;
      case KerasLayerType::kActivation:
        if (!l.relu) break;  // linear
        if (net.layers.empty()) {
          return unimplemented(where + ": an activation on the raw input is not supported");
        }
        net.layers.back().params.relu = true;
        last_is_linear = false;
        break;
      case KerasLayerType::kFlatten:
        // Channels-last memory is already in (h, w, c) order: only the shape changes, and the
        // next op reads its input as 1 x 1 x (h*w*c) (checked below).
        if (net.layers.empty()) {
          return unimplemented(where + ": Flatten directly on the input is not supported");
        }
        break;
    }
  }
  if (net.layers.empty()) return unimplemented("model has no computing layers");
  for (const NetworkLayer& layer : net.layers) RETURN_IF_ERROR(check_finite(layer));
  // Flatten changed only shapes: each op must read exactly as many values as the one before wrote.
  for (std::size_t i = 1; i < net.layers.size(); ++i) {
    const LayerParams& prev = net.layers[i - 1].params;
    const LayerParams& cur = net.layers[i].params;
    if (prev.out_size() != cur.in_size()) {
      return internal_error("layer '" + net.layers[i].name + "' expects " +
                            std::to_string(cur.in_size()) + " inputs, gets " +
                            std::to_string(prev.out_size()));
    }
  }
  return net;
}

}  // namespace stimloop
