#include "models/demo_model.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include "common/sha256.h"
#include "models/compile_network.h"
#include "models/keras_import.h"

namespace stimloop {
namespace {

constexpr int kSide = 112;
constexpr int kOrientations = 8;
constexpr double kPi = std::numbers::pi;

KerasLayer conv_layer(KerasLayerType type, const char* class_name, const char* name,
                      const char* group, int in_side, int in_c, int filters, int stride) {
  KerasLayer l;
  l.type = type;
  l.class_name = class_name;
  l.name = name;
  l.weights_group = group;
  l.in_h = l.in_w = in_side;
  l.in_c = in_c;
  l.k_h = l.k_w = 5;
  l.stride_h = l.stride_w = stride;
  l.same_padding = true;
  l.filters = filters;
  l.out_h = l.out_w = (in_side + stride - 1) / stride;
  l.out_c = filters;
  return l;
}

// BatchNorm whose statistics make it the affine map gamma * x + beta (variance + eps == 1).
KerasLayer batchnorm(const std::string& name, const std::string& group, const KerasLayer& prev,
                     float gamma, float beta) {
  KerasLayer l;
  l.type = KerasLayerType::kBatchNormalization;
  l.class_name = "BatchNormalization";
  l.name = name;
  l.weights_group = group;
  l.in_h = l.out_h = prev.out_h;
  l.in_w = l.out_w = prev.out_w;
  l.in_c = l.out_c = prev.out_c;
  l.epsilon = 0.001;
  const auto c = static_cast<std::size_t>(prev.out_c);
  l.vars = {{{prev.out_c}, std::vector<float>(c, gamma)},
            {{prev.out_c}, std::vector<float>(c, beta)},
            {{prev.out_c}, std::vector<float>(c, 0.0f)},
            {{prev.out_c}, std::vector<float>(c, static_cast<float>(1.0 - 0.001))}};
  return l;
}

KerasLayer relu(const std::string& name, const std::string& group, const KerasLayer& prev) {
  KerasLayer l;
  l.type = KerasLayerType::kActivation;
  l.class_name = "Activation";
  l.name = name;
  l.weights_group = group;
  l.in_h = l.out_h = prev.out_h;
  l.in_w = l.out_w = prev.out_w;
  l.in_c = l.out_c = prev.out_c;
  l.relu = true;
  return l;
}

double gaussian(double dx, double dy, double sigma) {
  return std::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
}

// Layer 0: 16 Gabor filters (8 orientations x cosine/sine phase) on luminance, weights
// (5, 5, 3, 16). Scaled so a full-contrast grating (+-128) gives a response near 1.
std::vector<float> gabor_bank() {
  std::vector<float> w(5 * 5 * 3 * 2 * kOrientations);
  for (int o = 0; o < kOrientations; ++o) {
    const double theta = kPi * o / kOrientations;
    for (int phase = 0; phase < 2; ++phase) {
      const int f = 2 * o + phase;
      double taps[5][5], mean = 0;
      for (int y = 0; y < 5; ++y) {
        for (int x = 0; x < 5; ++x) {
          const double u = (x - 2) * std::cos(theta) + (y - 2) * std::sin(theta);
          taps[y][x] = gaussian(x - 2, y - 2, 1.5) * std::cos(2 * kPi * 0.25 * u + phase * kPi / 2);
          mean += taps[y][x] / 25;
        }
      }
      for (int y = 0; y < 5; ++y) {
        for (int x = 0; x < 5; ++x) {
          for (int c = 0; c < 3; ++c) {
            const double zero_mean = taps[y][x] - mean;  // no response to uniform fields
            w[((y * 5 + x) * 3 + c) * 16 + f] = static_cast<float>(zero_mean / (3 * 128.0 * 2.5));
          }
        }
      }
    }
  }
  return w;
}

// A normalized 5x5 Gaussian per channel: the depthwise half of the pooling layers.
std::vector<float> blur_taps(int channels) {
  std::vector<float> w(25 * channels);
  double total = 0;
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 5; ++x) total += gaussian(x - 2, y - 2, 1.2);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < channels; ++c)
        w[(y * 5 + x) * channels + c] = static_cast<float>(gaussian(x - 2, y - 2, 1.2) / total);
  return w;
}

void set_separable_weights(KerasLayer& l, std::vector<float> pointwise) {
  l.vars = {{{5, 5, l.in_c, 1}, blur_taps(l.in_c)},
            {{1, 1, l.in_c, l.filters}, std::move(pointwise)},
            {{l.filters}, std::vector<float>(l.filters, 0.0f)}};
}

}  // namespace

KerasGraph build_demo_graph(DemoKind kind) {
  const bool population = kind == DemoKind::kPopulation;
  KerasGraph g;
  g.source = "built-in";
  g.in_h = g.in_w = kSide;
  g.in_c = 3;

  KerasLayer l0 = conv_layer(KerasLayerType::kConv2D, "Conv2D", "layer0_conv", "conv2d", kSide, 3,
                             2 * kOrientations, 1);
  l0.vars = {{{5, 5, 3, 2 * kOrientations}, gabor_bank()},
             {{2 * kOrientations}, std::vector<float>(2 * kOrientations, 0.0f)}};
  g.layers.push_back(l0);
  g.layers.push_back(batchnorm("layer0_bn", "batch_normalization", l0, 1.0f, -0.05f));
  g.layers.push_back(relu("layer0_act", "activation", l0));

  // Layer 1: pool, then sum the two phases of each orientation (a complex-cell-like energy).
  KerasLayer l1 = conv_layer(KerasLayerType::kSeparableConv2D, "SeparableConv2D", "layer1_conv",
                             "separable_conv2d", 112, 16, kOrientations, 2);
  std::vector<float> pw1(16 * kOrientations, 0.0f);
  for (int o = 0; o < kOrientations; ++o) pw1[(2 * o) * 8 + o] = pw1[(2 * o + 1) * 8 + o] = 1.0f;
  set_separable_weights(l1, pw1);
  // Layer 2: pool, then pair neighbouring orientations, minus a share of the others.
  KerasLayer l2 = conv_layer(KerasLayerType::kSeparableConv2D, "SeparableConv2D", "layer2_conv",
                             "separable_conv2d_1", 56, 8, 4, 2);
  std::vector<float> pw2(8 * 4, -0.15f);
  for (int m = 0; m < 4; ++m) pw2[(2 * m) * 4 + m] = pw2[(2 * m + 1) * 4 + m] = 1.0f;
  set_separable_weights(l2, pw2);
  // Layers 3 and 4: orientation opponency (vertical-ish minus horizontal-ish), then smoothing.
  // The population demo keeps the four orientation channels (identity mixing) for four neurons.
  const int c3 = population ? 4 : 2;
  KerasLayer l3 = conv_layer(KerasLayerType::kSeparableConv2D, "SeparableConv2D", "layer3_conv",
                             "separable_conv2d_2", 28, 4, c3, 1);
  std::vector<float> pw3(4 * c3, 0.0f);
  if (population) {
    for (int m = 0; m < 4; ++m) pw3[m * 4 + m] = 1.0f;
  } else {
    pw3 = {1.0f, 0.0f, 0.0f, 1.0f, -0.5f, 0.0f, 0.0f, -0.5f};
  }
  set_separable_weights(l3, pw3);
  KerasLayer l4 = conv_layer(KerasLayerType::kSeparableConv2D, "SeparableConv2D", "layer4_conv",
                             "separable_conv2d_3", 28, c3, c3, 1);
  std::vector<float> pw4(c3 * c3, 0.0f);
  for (int m = 0; m < c3; ++m) pw4[m * c3 + m] = 1.0f;
  set_separable_weights(l4, pw4);

  const KerasLayer* prev = &l0;
  int index = 1;
  for (KerasLayer* l : {&l1, &l2, &l3, &l4}) {
    const std::string n = "layer" + std::to_string(index), i = std::to_string(index);
    g.layers.push_back(*l);
    g.layers.push_back(batchnorm(n + "_bn", "batch_normalization_" + i, *l, 1.0f, 0.0f));
    g.layers.push_back(relu(n + "_act", "activation_" + i, *l));
    prev = l;
    ++index;
  }

  KerasLayer flatten;
  flatten.type = KerasLayerType::kFlatten;
  flatten.class_name = "Flatten";
  flatten.name = "embeddings";
  flatten.weights_group = "flatten";
  flatten.in_h = flatten.in_w = 28;
  flatten.in_c = prev->out_c;
  flatten.out_h = flatten.out_w = 1;
  flatten.out_c = 28 * 28 * prev->out_c;
  g.layers.push_back(flatten);

  // Dense readout. Single demo: a Gaussian window (sigma 4) centred on the image, channel 0
  // weighted most. Population demo: neuron m reads orientation channel m through a window
  // (sigma 3) centred in quadrant m, so each prefers its own orientation at its own place.
  KerasLayer dense;
  dense.type = KerasLayerType::kDense;
  dense.class_name = "Dense";
  dense.name = "Beta";
  dense.weights_group = "dense";
  dense.in_h = dense.in_w = dense.out_h = dense.out_w = 1;
  dense.in_c = flatten.out_c;
  const int outputs = population ? 4 : 1;
  dense.filters = dense.out_c = outputs;
  std::vector<float> readout(std::size_t(flatten.out_c) * outputs);
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) {
      for (int c = 0; c < c3; ++c) {
        const std::size_t row = std::size_t((y * 28 + x) * c3 + c) * outputs;
        if (population) {
          const double cy = c < 2 ? 9.5 : 17.5, cx = c % 2 == 0 ? 9.5 : 17.5;
          readout[row + c] = static_cast<float>(gaussian(x - cx, y - cy, 3.0) * 0.4);
        } else {
          readout[row] =
              static_cast<float>((c == 0 ? 1.0 : 0.3) * gaussian(x - 13.5, y - 13.5, 4.0) * 0.2);
        }
      }
    }
  }
  dense.vars = {{{flatten.out_c, outputs}, readout},
                {{outputs}, std::vector<float>(outputs, 0.1f)}};
  g.layers.push_back(dense);

  // The demo's "file hash": SHA-256 of all its weights, so records can still name it exactly.
  std::vector<std::uint8_t> bytes;
  for (const auto& layer : g.layers) {
    for (const auto& var : layer.vars) {
      const auto* p = reinterpret_cast<const std::uint8_t*>(var.values.data());
      bytes.insert(bytes.end(), p, p + var.values.size() * sizeof(float));
    }
  }
  g.sha256 = sha256_hex(bytes);
  return g;
}

namespace {

std::shared_ptr<const Model> make_demo(DemoKind kind) {
  const KerasGraph graph = build_demo_graph(kind);
  auto network = compile_network(graph);  // cannot fail: the graph is built right here
  auto model = std::make_shared<Model>();
  model->info = describe_model(graph, *network);
  model->info.demo = true;
  if (kind == DemoKind::kSingle) {
    model->info.id = kDemoModelId;
    model->info.description =
        "DEMO: built-in procedural Gabor model with the compact architecture; not a V4 neuron";
  } else {
    model->info.id = kDemoPopulationModelId;
    model->info.description =
        "DEMO: built-in procedural 4-neuron model (orientation x quadrant); not V4 neurons";
  }
  model->network = std::make_shared<const Network>(std::move(network).value());
  return model;
}

}  // namespace

std::shared_ptr<const Model> demo_model(DemoKind kind) {
  static const std::shared_ptr<const Model> kSingle = make_demo(DemoKind::kSingle);
  static const std::shared_ptr<const Model> kPopulation = make_demo(DemoKind::kPopulation);
  return kind == DemoKind::kSingle ? kSingle : kPopulation;
}

bool is_demo_id(const std::string& id) {
  return id == kDemoModelId || id == kDemoPopulationModelId;
}

StatusOr<std::shared_ptr<const Model>> demo_model_by_id(const std::string& id) {
  if (id == kDemoModelId) return demo_model(DemoKind::kSingle);
  if (id == kDemoPopulationModelId) return demo_model(DemoKind::kPopulation);
  return not_found("no built-in demo model '" + id + "'");
}

}  // namespace stimloop
