#include "models/keras_export.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <set>

#include "common/durable_file.h"
#include "models/keras_writer_core.h"

namespace stimloop {
namespace {

std::string shape_text(int h, int w, int c) {
  return std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c);
}

// Keras 3 rejects '/' in layer names; the other characters outside this set would make the
// names awkward in Python and in HDF5 paths, so they become '_' too.
std::string sanitize(const std::string& name) {
  std::string out = name;
  for (char& ch : out) {
    const bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                       (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
    if (!plain) ch = '_';
  }
  return out;
}

// The Keras layer name an op came from: the separable halves share their layer's name.
std::string layer_name_of(const std::string& op_name) {
  for (const std::string suffix : {"/depthwise", "/pointwise"}) {
    if (op_name.size() > suffix.size() &&
        op_name.compare(op_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return op_name.substr(0, op_name.size() - suffix.size());
    }
  }
  return op_name;
}

// Builds the layer chain, tracking the Keras tensor each layer leaves behind.
class ChainBuilder {
 public:
  explicit ChainBuilder(const Network& net) {
    graph_.in_h = h_ = net.in_h;
    graph_.in_w = w_ = net.in_w;
    graph_.in_c = c_ = net.in_c;
  }

  // A layer reading the current tensor; its output shape starts equal to its input.
  KerasLayer& add(KerasLayerType type, const char* class_name, const std::string& wanted_name) {
    KerasLayer l;
    l.type = type;
    l.class_name = class_name;
    l.name = unique_name(wanted_name.empty() ? keras_auto_name(type) : wanted_name);
    l.in_h = l.out_h = h_, l.in_w = l.out_w = w_, l.in_c = l.out_c = c_;
    graph_.layers.push_back(std::move(l));
    return graph_.layers.back();
  }
  // Records the output of the layer just added as the current tensor.
  void produced(const KerasLayer& l, bool flat) {
    h_ = l.out_h, w_ = l.out_w, c_ = l.out_c;
    flat_ = flat;
  }

  void add_relu(const std::string& layer_name) {
    // "layer0_conv" -> "layer0_act", as the published files name the activation after a conv.
    std::string name = layer_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, "_conv") == 0) {
      name.resize(name.size() - 5);
    }
    add(KerasLayerType::kActivation, "Activation", name + "_act").relu = true;
  }
  KerasLayer& add_flatten(const std::string& name) {
    KerasLayer& f = add(KerasLayerType::kFlatten, "Flatten", name);
    f.out_h = f.out_w = 1;
    f.out_c = h_ * w_ * c_;
    produced(f, /*flat=*/true);
    return f;
  }

  int h() const { return h_; }
  int w() const { return w_; }
  int c() const { return c_; }
  bool flat() const { return flat_; }
  bool empty() const { return graph_.layers.empty(); }
  KerasGraph take() { return std::move(graph_); }

 private:
  std::string unique_name(const std::string& wanted) {
    std::string name = wanted;
    for (int n = 2; used_.count(name) > 0; ++n) name = wanted + "_" + std::to_string(n);
    used_.insert(name);
    return name;
  }

  KerasGraph graph_;
  std::set<std::string> used_{"image_input"};
  int h_ = 0, w_ = 0, c_ = 0;
  bool flat_ = false;  // the tensor is (batch, features): after Flatten or Dense
};

WeightTensor tensor(std::vector<std::int64_t> shape, const std::vector<float>& values) {
  return WeightTensor{std::move(shape), values};
}

// Which TensorFlow padding an op's geometry is, or UNIMPLEMENTED naming it.
StatusOr<bool> is_same_padding(const NetworkLayer& op) {
  const LayerParams& p = op.params;
  const AxisGeometry sy = same_padding(p.in_h, p.k_h, p.stride_h);
  const AxisGeometry sx = same_padding(p.in_w, p.k_w, p.stride_w);
  if (sy.out == p.out_h && sx.out == p.out_w && sy.pad_before == p.pad_top &&
      sx.pad_before == p.pad_left) {
    return true;
  }
  const AxisGeometry vy = valid_padding(p.in_h, p.k_h, p.stride_h);
  const AxisGeometry vx = valid_padding(p.in_w, p.k_w, p.stride_w);
  if (vy.out == p.out_h && vx.out == p.out_w && p.pad_top == 0 && p.pad_left == 0) return false;
  return unimplemented("op '" + op.name + "': padding (top " + std::to_string(p.pad_top) +
                       ", left " + std::to_string(p.pad_left) + ", output " +
                       shape_text(p.out_h, p.out_w, p.out_c) +
                       ") is neither TensorFlow 'same' nor 'valid'");
}

Status check_op(const NetworkLayer& op) {
  const LayerParams& p = op.params;
  if (static_cast<std::int64_t>(op.weights.size()) != p.weight_count() ||
      static_cast<std::int64_t>(op.bias.size()) != p.bias_count()) {
    return invalid_argument("op '" + op.name + "' holds " + std::to_string(op.weights.size()) +
                            " weights and " + std::to_string(op.bias.size()) +
                            " biases for its shape");
  }
  if (p.kind == LayerKind::kDepthwise && p.out_c != p.in_c) {
    return unimplemented("op '" + op.name + "': a depthwise op with a depth multiplier");
  }
  return Status::Ok();
}

// An op that reads the current tensor as it is (every op but a Dense).
Status check_reads_tensor(const NetworkLayer& op, const ChainBuilder& b) {
  const LayerParams& p = op.params;
  if (b.flat() || p.in_h != b.h() || p.in_w != b.w() || p.in_c != b.c()) {
    return unimplemented(
        "op '" + op.name + "' reads its input as " + shape_text(p.in_h, p.in_w, p.in_c) +
        " but the layer before writes " +
        (b.flat() ? std::to_string(b.c()) + " flat values" : shape_text(b.h(), b.w(), b.c())) +
        " (a reshape no Keras layer here expresses)");
  }
  return Status::Ok();
}

void set_conv_geometry(KerasLayer& l, const LayerParams& p, bool same) {
  l.k_h = p.k_h, l.k_w = p.k_w;
  l.stride_h = p.stride_h, l.stride_w = p.stride_w;
  l.same_padding = same;
  l.out_h = p.out_h, l.out_w = p.out_w;
}

std::string date_saved_now() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d@%H:%M:%S", &local);  // as Keras writes it
  return text;
}

}  // namespace

StatusOr<KerasGraph> keras_graph_of(const Network& net) {
  if (net.layers.empty()) return invalid_argument("network has no layers");
  ChainBuilder b(net);
  for (std::size_t i = 0; i < net.layers.size(); ++i) {
    const NetworkLayer& op = net.layers[i];
    const LayerParams& p = op.params;
    RETURN_IF_ERROR(check_op(op));
    const std::string name = sanitize(layer_name_of(op.name));
    bool relu = p.relu;
    std::string layer_name;
    switch (p.kind) {
      case LayerKind::kConv2D: {
        RETURN_IF_ERROR(check_reads_tensor(op, b));
        ASSIGN_OR_RETURN(const bool same, is_same_padding(op));
        KerasLayer& l = b.add(KerasLayerType::kConv2D, "Conv2D", name);
        set_conv_geometry(l, p, same);
        l.filters = l.out_c = p.out_c;
        l.use_bias = p.has_bias;
        l.vars = {tensor({p.k_h, p.k_w, p.in_c, p.out_c}, op.weights)};
        if (p.has_bias) l.vars.push_back(tensor({p.out_c}, op.bias));
        b.produced(l, false);
        layer_name = l.name;
        break;
      }
      case LayerKind::kDepthwise: {
        RETURN_IF_ERROR(check_reads_tensor(op, b));
        ASSIGN_OR_RETURN(const bool same, is_same_padding(op));
        const NetworkLayer* pw = i + 1 < net.layers.size() ? &net.layers[i + 1] : nullptr;
        // Keras' SeparableConv2D has no bias or activation between its two halves.
        const bool separable =
            !p.has_bias && !p.relu && pw != nullptr && pw->params.kind == LayerKind::kPointwise &&
            pw->params.in_h == p.out_h && pw->params.in_w == p.out_w && pw->params.in_c == p.out_c;
        if (separable) {
          RETURN_IF_ERROR(check_op(*pw));
          const LayerParams& q = pw->params;
          KerasLayer& l = b.add(KerasLayerType::kSeparableConv2D, "SeparableConv2D", name);
          set_conv_geometry(l, p, same);
          l.filters = l.out_c = q.out_c;
          l.use_bias = q.has_bias;
          l.vars = {tensor({p.k_h, p.k_w, p.in_c, 1}, op.weights),
                    tensor({1, 1, q.in_c, q.out_c}, pw->weights)};
          if (q.has_bias) l.vars.push_back(tensor({q.out_c}, pw->bias));
          relu = q.relu;
          ++i;
          b.produced(l, false);
          layer_name = l.name;
        } else {
          KerasLayer& l = b.add(KerasLayerType::kDepthwiseConv2D, "DepthwiseConv2D", name);
          set_conv_geometry(l, p, same);
          l.out_c = p.out_c;
          l.use_bias = p.has_bias;
          l.vars = {tensor({p.k_h, p.k_w, p.in_c, 1}, op.weights)};
          if (p.has_bias) l.vars.push_back(tensor({p.out_c}, op.bias));
          b.produced(l, false);
          layer_name = l.name;
        }
        break;
      }
      case LayerKind::kPointwise: {
        // Over a 1x1 image after another layer, the op is a Dense over everything before it.
        const bool dense = p.in_h == 1 && p.in_w == 1 && (b.flat() || !b.empty());
        if (dense) {
          const std::int64_t features = std::int64_t{b.h()} * b.w() * b.c();
          if (features != p.in_c) {
            return unimplemented("op '" + op.name + "' reads " + std::to_string(p.in_c) +
                                 " values but the layer before writes " + std::to_string(features));
          }
          if (!b.flat()) b.add_flatten(name + "_flatten");
          KerasLayer& l = b.add(KerasLayerType::kDense, "Dense", name);
          l.filters = l.out_c = p.out_c;
          l.use_bias = p.has_bias;
          l.vars = {tensor({p.in_c, p.out_c}, op.weights)};
          if (p.has_bias) l.vars.push_back(tensor({p.out_c}, op.bias));
          b.produced(l, true);
          layer_name = l.name;
        } else {
          RETURN_IF_ERROR(check_reads_tensor(op, b));
          KerasLayer& l = b.add(KerasLayerType::kConv2D, "Conv2D", name);
          // 1x1, stride 1: 'same' and 'valid' agree; 'same' as the published mixing stage.
          set_conv_geometry(l, p, /*same=*/true);
          l.k_h = l.k_w = 1;
          l.stride_h = l.stride_w = 1;
          l.filters = l.out_c = p.out_c;
          l.use_bias = p.has_bias;
          l.vars = {tensor({1, 1, p.in_c, p.out_c}, op.weights)};
          if (p.has_bias) l.vars.push_back(tensor({p.out_c}, op.bias));
          b.produced(l, false);
          layer_name = l.name;
        }
        break;
      }
    }
    if (relu) b.add_relu(layer_name);
  }
  // (batch, outputs) rather than (batch, 1, 1, outputs), as the shared models end.
  if (!b.flat() && b.h() == 1 && b.w() == 1) b.add_flatten("output_responses");
  KerasGraph graph = b.take();
  assign_weights_groups(graph);
  return graph;
}

Status write_keras(const Model& model, const std::string& path) {
  const std::string where = "write_keras " + path;
  if (model.network == nullptr) return invalid_argument(where + ": model has no network");
  if (model.channel_means != kV4ChannelMeans) {
    return unimplemented(where + ": model '" + model.info.id +
                         "' re-centers with other channel means than the V4 ones, which a .keras "
                         "file cannot carry");
  }
  auto graph = keras_graph_of(*model.network);
  if (!graph.ok()) return graph.status().with_context(where);
  auto h5 = h5_file_image(keras_weights_contents(*graph));
  if (!h5.ok()) return h5.status().with_context(where);

  nlohmann::json config = keras_config_json(*graph);
  // For prediction: uncompiled, as Keras saves such a model (no optimizer state to restore).
  config.erase("compile_config");

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  Status status = write_keras_zip(tmp, config.dump(), *h5, {}, date_saved_now());
  if (status.ok()) status = sync_path(tmp);
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = internal_error("cannot rename " + tmp + " to " + path);
  }
  if (!status.ok()) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return status.with_context(where);
  }
  // The rename itself is durable only once the directory holding the new name is synced.
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return sync_path(dir.empty() ? "." : dir.string()).with_context(where);
}

}  // namespace stimloop
