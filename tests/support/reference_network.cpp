// Double-precision references. Deliberately naive: one scalar loop nest per op, forward in
// "gather" form (each output sums its inputs) and backward in "scatter" form (each output
// gradient is added into every input it read), the reverse of kernels/cpu, whose backward
// gathers per input pixel. Every size is checked; a mismatch throws, which Catch reports as a
// failure of the calling test.
#include "tests/support/reference_network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace stimloop::test {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("reference: " + what);
}

void expect_size(const std::string& what, std::size_t got, std::int64_t want) {
  if (static_cast<std::int64_t>(got) != want) {
    fail(what + " holds " + std::to_string(got) + " values, expected " + std::to_string(want));
  }
}

// Channels-last index of (b, y, x, c) in a batch of h x w x c images.
inline std::int64_t at(int b, int y, int x, int c, int h, int w, int ch) {
  return ((std::int64_t{b} * h + y) * w + x) * ch + c;
}

void check_layer(const LayerParams& p, int n, std::size_t in, std::size_t w, std::size_t bias) {
  if (n <= 0) fail("batch size " + std::to_string(n));
  expect_size(std::string(layer_kind_name(p.kind)) + " input", in, n * p.in_size());
  expect_size(std::string(layer_kind_name(p.kind)) + " weights", w, p.weight_count());
  expect_size(std::string(layer_kind_name(p.kind)) + " bias", bias, p.has_bias ? p.out_c : 0);
  if (p.kind == LayerKind::kDepthwise && p.in_c != p.out_c) fail("depthwise with in_c != out_c");
  if (p.kind == LayerKind::kPointwise && (p.in_h != p.out_h || p.in_w != p.out_w)) {
    fail("pointwise op that changes the spatial size");
  }
}

// Calls f(oy, ox, ky, kx, iy, ix) for every kernel tap of every output pixel whose input pixel
// lies inside the image (taps on the zero padding contribute nothing). Pointwise ops are 1x1
// taps at stride 1 without padding.
template <typename F>
void for_each_tap(const LayerParams& p, F&& f) {
  const bool pw = p.kind == LayerKind::kPointwise;
  const int kh = pw ? 1 : p.k_h, kw = pw ? 1 : p.k_w;
  const int sh = pw ? 1 : p.stride_h, sw = pw ? 1 : p.stride_w;
  const int pt = pw ? 0 : p.pad_top, pl = pw ? 0 : p.pad_left;
  for (int oy = 0; oy < p.out_h; ++oy) {
    for (int ox = 0; ox < p.out_w; ++ox) {
      for (int ky = 0; ky < kh; ++ky) {
        const int iy = oy * sh - pt + ky;
        if (iy < 0 || iy >= p.in_h) continue;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = ox * sw - pl + kx;
          if (ix < 0 || ix >= p.in_w) continue;
          f(oy, ox, ky, kx, iy, ix);
        }
      }
    }
  }
}

struct LayerCache {
  std::vector<double> w, bias;
};

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// ---- Keras graph, unfolded ------------------------------------------------------------------

// The op a Keras convolution describes, with padding computed from the TensorFlow rule and the
// output size checked against what the graph claims (channels are checked by the caller).
LayerParams keras_conv_params(const KerasLayer& l, LayerKind kind, int out_c) {
  LayerParams p;
  p.kind = kind;
  p.in_h = l.in_h, p.in_w = l.in_w, p.in_c = l.in_c;
  p.k_h = l.k_h, p.k_w = l.k_w;
  p.stride_h = l.stride_h, p.stride_w = l.stride_w;
  const AxisGeometry gy = l.same_padding ? same_padding(l.in_h, l.k_h, l.stride_h)
                                         : valid_padding(l.in_h, l.k_h, l.stride_h);
  const AxisGeometry gx = l.same_padding ? same_padding(l.in_w, l.k_w, l.stride_w)
                                         : valid_padding(l.in_w, l.k_w, l.stride_w);
  p.out_h = gy.out, p.out_w = gx.out, p.out_c = out_c;
  p.pad_top = gy.pad_before, p.pad_left = gx.pad_before;
  if (p.out_h != l.out_h || p.out_w != l.out_w) {
    fail("layer '" + l.name + "' claims output " + std::to_string(l.out_h) + "x" +
         std::to_string(l.out_w) + ", TensorFlow gives " + std::to_string(p.out_h) + "x" +
         std::to_string(p.out_w));
  }
  return p;
}

// A 1x1 convolution as a dense conv op (not the pointwise kind, so the reference does not
// follow compile_network's rewriting).
LayerParams one_by_one(int h, int w, int in_c, int out_c, bool bias) {
  LayerParams p;
  p.kind = LayerKind::kConv2D;
  p.in_h = p.out_h = h;
  p.in_w = p.out_w = w;
  p.in_c = in_c, p.out_c = out_c;
  p.has_bias = bias;
  return p;
}

const WeightTensor& var(const KerasLayer& l, std::size_t i, std::vector<std::int64_t> shape) {
  if (l.vars.size() <= i) fail("layer '" + l.name + "' lacks vars/" + std::to_string(i));
  const WeightTensor& t = l.vars[i];
  if (t.shape != shape)
    fail("layer '" + l.name + "' vars/" + std::to_string(i) + " has the wrong shape");
  std::int64_t count = 1;
  for (auto d : shape) count *= d;
  expect_size("layer '" + l.name + "' vars/" + std::to_string(i), t.values.size(), count);
  return t;
}

// One step of the unfolded evaluation: a Keras layer, or half of a separable one.
struct KerasStep {
  enum Kind { kOp, kBatchNorm, kRelu, kReshape, kDense } kind = kOp;
  const KerasLayer* layer = nullptr;
  LayerParams p;                           // kOp
  std::vector<double> w, bias;             // kOp: weights; kDense: (in, out) and bias
  std::int64_t in_size = 0, out_size = 0;  // per image
  int channels = 0;                        // kBatchNorm, kDense: the last axis
};

std::vector<KerasStep> keras_steps(const KerasGraph& graph) {
  std::vector<KerasStep> steps;
  std::int64_t size = std::int64_t{graph.in_h} * graph.in_w * graph.in_c;
  for (const KerasLayer& l : graph.layers) {
    const std::int64_t in_size = std::int64_t{l.in_h} * l.in_w * l.in_c;
    const std::int64_t out_size = std::int64_t{l.out_h} * l.out_w * l.out_c;
    if (in_size != size) {
      fail("layer '" + l.name + "' reads " + std::to_string(in_size) + " values, gets " +
           std::to_string(size));
    }
    auto push = [&](KerasStep s) {
      s.layer = &l;
      steps.push_back(std::move(s));
    };
    switch (l.type) {
      case KerasLayerType::kConv2D: {
        KerasStep s;
        s.p = keras_conv_params(l, LayerKind::kConv2D, l.filters);
        s.p.has_bias = l.use_bias;
        if (l.out_c != l.filters) fail("layer '" + l.name + "': out_c != filters");
        s.w = widen(var(l, 0, {l.k_h, l.k_w, l.in_c, l.filters}).values);
        if (l.use_bias) s.bias = widen(var(l, 1, {l.filters}).values);
        push(std::move(s));
        break;
      }
      case KerasLayerType::kSeparableConv2D: {
        KerasStep dw;
        dw.p = keras_conv_params(l, LayerKind::kDepthwise, l.in_c);
        dw.p.has_bias = false;
        dw.w = widen(var(l, 0, {l.k_h, l.k_w, l.in_c, 1}).values);
        KerasStep pw;
        pw.p = one_by_one(l.out_h, l.out_w, l.in_c, l.filters, l.use_bias);
        pw.w = widen(var(l, 1, {1, 1, l.in_c, l.filters}).values);
        if (l.use_bias) pw.bias = widen(var(l, 2, {l.filters}).values);
        if (l.out_c != l.filters) fail("layer '" + l.name + "': out_c != filters");
        push(std::move(dw));
        push(std::move(pw));
        break;
      }
      case KerasLayerType::kDepthwiseConv2D: {
        KerasStep s;
        s.p = keras_conv_params(l, LayerKind::kDepthwise, l.in_c);
        s.p.has_bias = l.use_bias;
        if (l.out_c != l.in_c) fail("layer '" + l.name + "': out_c != in_c");
        s.w = widen(var(l, 0, {l.k_h, l.k_w, l.in_c, 1}).values);
        if (l.use_bias) s.bias = widen(var(l, 1, {l.in_c}).values);
        push(std::move(s));
        break;
      }
      case KerasLayerType::kBatchNormalization: {
        KerasStep s;
        s.kind = KerasStep::kBatchNorm;
        s.channels = l.in_c;
        for (int i = 0; i < 4; ++i) var(l, i, {l.in_c});
        if (out_size != in_size || l.out_c != l.in_c) fail("BatchNormalization changes the shape");
        push(std::move(s));
        break;
      }
      case KerasLayerType::kActivation: {
        KerasStep s;
        s.kind = l.relu ? KerasStep::kRelu : KerasStep::kReshape;
        if (out_size != in_size) fail("Activation changes the size");
        push(std::move(s));
        break;
      }
      case KerasLayerType::kFlatten: {
        KerasStep s;
        s.kind = KerasStep::kReshape;
        if (out_size != in_size || l.out_h != 1 || l.out_w != 1) fail("bad Flatten shape");
        push(std::move(s));
        break;
      }
      case KerasLayerType::kDense: {
        KerasStep s;
        s.kind = KerasStep::kDense;
        s.channels = l.in_c;
        s.w = widen(var(l, 0, {l.in_c, l.filters}).values);
        if (l.use_bias) s.bias = widen(var(l, 1, {l.filters}).values);
        if (l.out_h != l.in_h || l.out_w != l.in_w || l.out_c != l.filters) {
          fail("bad Dense shape");
        }
        push(std::move(s));
        break;
      }
    }
    // Each step's sizes; a separable layer's two steps get theirs from their ops.
    for (std::size_t i = steps.size(); i-- > 0 && steps[i].layer == &l;) {
      KerasStep& s = steps[i];
      if (s.kind == KerasStep::kOp) {
        s.in_size = s.p.in_size();
        s.out_size = s.p.out_size();
      } else {
        s.in_size = in_size;
        s.out_size = out_size;
      }
    }
    size = out_size;
  }
  if (steps.empty()) fail("graph without layers");
  return steps;
}

double bn_scale(const KerasLayer& l, int ch) {
  return static_cast<double>(l.vars[0].values[ch]) /
         std::sqrt(static_cast<double>(l.vars[3].values[ch]) + l.epsilon);
}

std::vector<double> step_forward(const KerasStep& s, int n, const std::vector<double>& x) {
  switch (s.kind) {
    case KerasStep::kOp:
      return ref_layer_forward(s.p, n, x, s.w, s.bias);
    case KerasStep::kBatchNorm: {
      const KerasLayer& l = *s.layer;
      std::vector<double> y(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const int ch = static_cast<int>(i % s.channels);
        const double gamma = l.vars[0].values[ch], beta = l.vars[1].values[ch];
        const double mean = l.vars[2].values[ch], variance = l.vars[3].values[ch];
        y[i] = gamma * (x[i] - mean) / std::sqrt(variance + l.epsilon) + beta;
      }
      return y;
    }
    case KerasStep::kRelu: {
      std::vector<double> y(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] > 0 ? x[i] : 0.0;
      return y;
    }
    case KerasStep::kReshape:
      return x;
    case KerasStep::kDense: {
      // out[.., o] = bias[o] + sum_i in[.., i] * W[i, o] over the last axis.
      const int in_c = s.channels, out_c = s.layer->filters;
      const std::int64_t rows = static_cast<std::int64_t>(x.size()) / in_c;
      std::vector<double> y(rows * out_c);
      for (std::int64_t r = 0; r < rows; ++r) {
        for (int o = 0; o < out_c; ++o) {
          double acc = s.bias.empty() ? 0.0 : s.bias[o];
          for (int i = 0; i < in_c; ++i) acc += x[r * in_c + i] * s.w[std::int64_t{i} * out_c + o];
          y[r * out_c + o] = acc;
        }
      }
      return y;
    }
  }
  return {};
}

// d/d(step input) given d/d(step output); x and y are the step's input and output.
std::vector<double> step_backward(const KerasStep& s, int n, const std::vector<double>& x,
                                  const std::vector<double>& y, const std::vector<double>& g) {
  switch (s.kind) {
    case KerasStep::kOp:
      return ref_layer_backward_input(s.p, n, g, s.w);  // never fused ReLU
    case KerasStep::kBatchNorm: {
      std::vector<double> d(g.size());
      for (std::size_t i = 0; i < g.size(); ++i) {
        d[i] = g[i] * bn_scale(*s.layer, static_cast<int>(i % s.channels));
      }
      return d;
    }
    case KerasStep::kRelu: {
      std::vector<double> d(g.size());
      for (std::size_t i = 0; i < g.size(); ++i) d[i] = y[i] > 0 ? g[i] : 0.0;
      return d;
    }
    case KerasStep::kReshape:
      return g;
    case KerasStep::kDense: {
      const int in_c = s.channels, out_c = s.layer->filters;
      const std::int64_t rows = static_cast<std::int64_t>(x.size()) / in_c;
      std::vector<double> d(x.size(), 0.0);
      for (std::int64_t r = 0; r < rows; ++r) {
        for (int o = 0; o < out_c; ++o) {
          const double go = g[r * out_c + o];
          for (int i = 0; i < in_c; ++i) d[r * in_c + i] += go * s.w[std::int64_t{i} * out_c + o];
        }
      }
      return d;
    }
  }
  return {};
}

// All step outputs (index 0 = the images).
std::vector<std::vector<double>> keras_forward(const std::vector<KerasStep>& steps, int n,
                                               const std::vector<double>& images) {
  std::vector<std::vector<double>> acts;
  acts.reserve(steps.size() + 1);
  acts.push_back(images);
  for (const KerasStep& s : steps) {
    expect_size("input of layer '" + s.layer->name + "'", acts.back().size(), n * s.in_size);
    acts.push_back(step_forward(s, n, acts.back()));
    expect_size("output of layer '" + s.layer->name + "'", acts.back().size(), n * s.out_size);
  }
  return acts;
}

// Activations of a compiled network (index 0 = the images), with converted weights.
std::vector<std::vector<double>> network_forward(const Network& net,
                                                 const std::vector<LayerCache>& cache, int n,
                                                 const std::vector<double>& images) {
  std::vector<std::vector<double>> acts;
  acts.reserve(net.layers.size() + 1);
  acts.push_back(images);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    acts.push_back(
        ref_layer_forward(net.layers[l].params, n, acts.back(), cache[l].w, cache[l].bias));
  }
  return acts;
}

std::vector<LayerCache> convert(const Network& net, const std::vector<double>& images, int n) {
  if (n <= 0) fail("batch size " + std::to_string(n));
  if (net.layers.empty()) fail("empty network");
  expect_size("images", images.size(), n * net.input_size());
  std::vector<LayerCache> cache;
  for (const auto& layer : net.layers) {
    cache.push_back({widen(layer.weights), widen(layer.bias)});
  }
  return cache;
}

template <typename A, typename B>
CloseReport compare_impl(std::span<const A> got, std::span<const B> want, double atol,
                         double rtol) {
  CloseReport r;
  if (got.size() != want.size()) {
    r.size_mismatch =
        static_cast<std::int64_t>(got.size()) - static_cast<std::int64_t>(want.size());
    if (r.size_mismatch == 0) r.size_mismatch = 1;
    return r;
  }
  double worst_excess = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double a = static_cast<double>(got[i]), b = static_cast<double>(want[i]);
    if (!std::isfinite(a)) {
      ++r.non_finite;
      if (r.worst_index < 0 || std::isfinite(worst_excess)) {
        worst_excess = std::numeric_limits<double>::infinity();
        r.worst_index = static_cast<std::int64_t>(i), r.worst_got = a, r.worst_want = b;
      }
      continue;
    }
    const double err = std::abs(a - b);
    r.max_abs_error = std::max(r.max_abs_error, err);
    const double excess = err - (atol + rtol * std::abs(b));
    if (excess > 0) {
      ++r.violations;
      if (excess > worst_excess) {
        worst_excess = excess;
        r.worst_index = static_cast<std::int64_t>(i), r.worst_got = a, r.worst_want = b;
      }
    }
  }
  return r;
}

template <typename A>
double rel_l2_impl(std::span<const A> got, std::span<const double> want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  if (!std::isfinite(num)) return std::numeric_limits<double>::infinity();
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

// ---- Single ops -------------------------------------------------------------------------------

std::vector<double> ref_layer_forward(const LayerParams& p, int n, const std::vector<double>& in,
                                      const std::vector<double>& w,
                                      const std::vector<double>& bias) {
  check_layer(p, n, in.size(), w.size(), bias.size());
  std::vector<double> out(static_cast<std::size_t>(n * p.out_size()), 0.0);
  for (int b = 0; b < n; ++b) {
    // Bias first, then every tap's contribution.
    for (int oy = 0; oy < p.out_h; ++oy)
      for (int ox = 0; ox < p.out_w; ++ox)
        for (int co = 0; co < p.out_c; ++co)
          out[at(b, oy, ox, co, p.out_h, p.out_w, p.out_c)] = p.has_bias ? bias[co] : 0.0;
    for_each_tap(p, [&](int oy, int ox, int ky, int kx, int iy, int ix) {
      switch (p.kind) {
        case LayerKind::kConv2D:
          for (int co = 0; co < p.out_c; ++co) {
            double s = 0;
            for (int ci = 0; ci < p.in_c; ++ci) {
              s += in[at(b, iy, ix, ci, p.in_h, p.in_w, p.in_c)] *
                   w[((std::int64_t{ky} * p.k_w + kx) * p.in_c + ci) * p.out_c + co];
            }
            out[at(b, oy, ox, co, p.out_h, p.out_w, p.out_c)] += s;
          }
          break;
        case LayerKind::kDepthwise:
          for (int c = 0; c < p.in_c; ++c) {
            out[at(b, oy, ox, c, p.out_h, p.out_w, p.out_c)] +=
                in[at(b, iy, ix, c, p.in_h, p.in_w, p.in_c)] *
                w[(std::int64_t{ky} * p.k_w + kx) * p.in_c + c];
          }
          break;
        case LayerKind::kPointwise:
          for (int co = 0; co < p.out_c; ++co) {
            double s = 0;
            for (int ci = 0; ci < p.in_c; ++ci) {
              s += in[at(b, iy, ix, ci, p.in_h, p.in_w, p.in_c)] *
                   w[std::int64_t{ci} * p.out_c + co];
            }
            out[at(b, oy, ox, co, p.out_h, p.out_w, p.out_c)] += s;
          }
          break;
      }
    });
  }
  if (p.relu) {
    for (double& v : out) v = v > 0 ? v : 0.0;
  }
  return out;
}

std::vector<double> ref_layer_backward_input(const LayerParams& p, int n,
                                             const std::vector<double>& d_out,
                                             const std::vector<double>& w) {
  if (n <= 0) fail("batch size " + std::to_string(n));
  expect_size(std::string(layer_kind_name(p.kind)) + " d_out", d_out.size(), n * p.out_size());
  check_layer(p, n, static_cast<std::size_t>(n * p.in_size()), w.size(), p.has_bias ? p.out_c : 0);
  std::vector<double> d_in(static_cast<std::size_t>(n * p.in_size()), 0.0);
  for (int b = 0; b < n; ++b) {
    // Scatter: every (output, tap) pair adds g * w into the input it read.
    for_each_tap(p, [&](int oy, int ox, int ky, int kx, int iy, int ix) {
      switch (p.kind) {
        case LayerKind::kConv2D:
          for (int co = 0; co < p.out_c; ++co) {
            const double g = d_out[at(b, oy, ox, co, p.out_h, p.out_w, p.out_c)];
            for (int ci = 0; ci < p.in_c; ++ci) {
              d_in[at(b, iy, ix, ci, p.in_h, p.in_w, p.in_c)] +=
                  g * w[((std::int64_t{ky} * p.k_w + kx) * p.in_c + ci) * p.out_c + co];
            }
          }
          break;
        case LayerKind::kDepthwise:
          for (int c = 0; c < p.in_c; ++c) {
            d_in[at(b, iy, ix, c, p.in_h, p.in_w, p.in_c)] +=
                d_out[at(b, oy, ox, c, p.out_h, p.out_w, p.out_c)] *
                w[(std::int64_t{ky} * p.k_w + kx) * p.in_c + c];
          }
          break;
        case LayerKind::kPointwise:
          for (int co = 0; co < p.out_c; ++co) {
            const double g = d_out[at(b, oy, ox, co, p.out_h, p.out_w, p.out_c)];
            for (int ci = 0; ci < p.in_c; ++ci) {
              d_in[at(b, iy, ix, ci, p.in_h, p.in_w, p.in_c)] +=
                  g * w[std::int64_t{ci} * p.out_c + co];
            }
          }
          break;
      }
    });
  }
  return d_in;
}

// ---- Whole networks ---------------------------------------------------------------------------

RefResult ref_network(const Network& net, const std::vector<double>& images, int n,
                      const std::vector<double>* seed) {
  const std::vector<LayerCache> cache = convert(net, images, n);
  const auto acts = network_forward(net, cache, n, images);
  RefResult result;
  result.outputs = acts.back();
  if (seed) {
    expect_size("seed", seed->size(), n * net.num_outputs());
    std::vector<double> g = *seed;
    for (std::size_t l = net.layers.size(); l-- > 0;) {
      const LayerParams& p = net.layers[l].params;
      if (p.relu) {
        const auto& y = acts[l + 1];
        for (std::size_t i = 0; i < g.size(); ++i) g[i] = y[i] > 0 ? g[i] : 0.0;
      }
      g = ref_layer_backward_input(p, n, g, cache[l].w);
    }
    result.d_input = std::move(g);
  }
  return result;
}

std::vector<bool> ref_network_relu_pattern(const Network& net, const std::vector<double>& images,
                                           int n) {
  const std::vector<LayerCache> cache = convert(net, images, n);
  std::vector<bool> pattern;
  std::vector<double> x = images;
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    LayerParams linear = net.layers[l].params;
    linear.relu = false;
    x = ref_layer_forward(linear, n, x, cache[l].w, cache[l].bias);
    if (net.layers[l].params.relu) {
      for (double v : x) pattern.push_back(v > 0);
      for (double& v : x) v = v > 0 ? v : 0.0;
    }
  }
  return pattern;
}

RefResult ref_keras_graph(const KerasGraph& graph, const std::vector<double>& images, int n,
                          const std::vector<double>* seed) {
  if (n <= 0) fail("batch size " + std::to_string(n));
  expect_size("images", images.size(), std::int64_t{n} * graph.in_h * graph.in_w * graph.in_c);
  const std::vector<KerasStep> steps = keras_steps(graph);
  const auto acts = keras_forward(steps, n, images);
  RefResult result;
  result.outputs = acts.back();
  if (seed) {
    expect_size("seed", seed->size(), acts.back().size());
    std::vector<double> g = *seed;
    for (std::size_t s = steps.size(); s-- > 0;)
      g = step_backward(steps[s], n, acts[s], acts[s + 1], g);
    result.d_input = std::move(g);
  }
  return result;
}

std::vector<bool> ref_keras_graph_relu_pattern(const KerasGraph& graph,
                                               const std::vector<double>& images, int n) {
  if (n <= 0) fail("batch size " + std::to_string(n));
  const std::vector<KerasStep> steps = keras_steps(graph);
  const auto acts = keras_forward(steps, n, images);
  std::vector<bool> pattern;
  for (std::size_t s = 0; s < steps.size(); ++s) {
    if (steps[s].kind != KerasStep::kRelu) continue;
    for (double v : acts[s]) pattern.push_back(v > 0);
  }
  return pattern;
}

// ---- Random data and models -----------------------------------------------------------------

std::vector<float> random_floats(std::size_t n, double lo, double hi, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

std::vector<double> to_double(std::span<const float> values) {
  return {values.begin(), values.end()};
}

RandomNetworkBuilder::RandomNetworkBuilder(int h, int w, int c, std::uint32_t seed)
    : h_(h), w_(w), c_(c), rng_(seed) {
  net_.in_h = h, net_.in_w = w, net_.in_c = c;
}

RandomNetworkBuilder& RandomNetworkBuilder::add(LayerParams p) {
  std::int64_t fan_in = p.in_c;
  if (p.kind == LayerKind::kConv2D) fan_in = std::int64_t{p.k_h} * p.k_w * p.in_c;
  if (p.kind == LayerKind::kDepthwise) fan_in = std::int64_t{p.k_h} * p.k_w;
  const double a = std::sqrt(3.0 / static_cast<double>(fan_in));
  NetworkLayer layer;
  layer.name = std::string(layer_kind_name(p.kind)) + "_" + std::to_string(net_.layers.size());
  layer.params = p;
  layer.weights = random_floats(static_cast<std::size_t>(p.weight_count()), -a, a, rng_);
  if (p.has_bias) layer.bias = random_floats(static_cast<std::size_t>(p.out_c), -0.1, 0.1, rng_);
  net_.layers.push_back(std::move(layer));
  h_ = p.out_h, w_ = p.out_w, c_ = p.out_c;
  return *this;
}

namespace {

LayerParams spatial_params(LayerKind kind, int h, int w, int in_c, int out_c, int k, int stride,
                           bool same, bool relu, bool bias) {
  LayerParams p;
  p.kind = kind;
  p.in_h = h, p.in_w = w, p.in_c = in_c;
  const AxisGeometry gy = same ? same_padding(h, k, stride) : valid_padding(h, k, stride);
  const AxisGeometry gx = same ? same_padding(w, k, stride) : valid_padding(w, k, stride);
  p.out_h = gy.out, p.out_w = gx.out, p.out_c = out_c;
  p.k_h = p.k_w = k;
  p.stride_h = p.stride_w = stride;
  p.pad_top = gy.pad_before, p.pad_left = gx.pad_before;
  p.has_bias = bias;
  p.relu = relu;
  return p;
}

}  // namespace

RandomNetworkBuilder& RandomNetworkBuilder::conv2d(int out_c, int k, int stride, bool same,
                                                   bool relu, bool bias) {
  return add(spatial_params(LayerKind::kConv2D, h_, w_, c_, out_c, k, stride, same, relu, bias));
}

RandomNetworkBuilder& RandomNetworkBuilder::depthwise(int k, int stride, bool same, bool relu,
                                                      bool bias) {
  return add(spatial_params(LayerKind::kDepthwise, h_, w_, c_, c_, k, stride, same, relu, bias));
}

RandomNetworkBuilder& RandomNetworkBuilder::pointwise(int out_c, bool relu, bool bias) {
  LayerParams p;
  p.kind = LayerKind::kPointwise;
  p.in_h = p.out_h = h_;
  p.in_w = p.out_w = w_;
  p.in_c = c_, p.out_c = out_c;
  p.has_bias = bias;
  p.relu = relu;
  return add(p);
}

RandomNetworkBuilder& RandomNetworkBuilder::dense(int out_c, bool relu, bool bias) {
  c_ = h_ * w_ * c_;
  h_ = w_ = 1;
  return pointwise(out_c, relu, bias);
}

RandomGraphBuilder::RandomGraphBuilder(int h, int w, int c, std::uint32_t seed)
    : h_(h), w_(w), c_(c), rng_(seed) {
  graph_.source = "random test graph";
  graph_.in_h = h, graph_.in_w = w, graph_.in_c = c;
}

std::vector<float> RandomGraphBuilder::uniform(std::size_t n, double a) {
  return random_floats(n, -a, a, rng_);
}

KerasLayer& RandomGraphBuilder::start(KerasLayerType type, const char* class_name,
                                      const char* auto_name) {
  KerasLayer l;
  l.type = type;
  l.class_name = class_name;
  int& count = counter_[static_cast<int>(type)];
  l.weights_group = count == 0 ? std::string(auto_name) : auto_name + ("_" + std::to_string(count));
  ++count;
  l.name = std::string(auto_name) + "_layer" + std::to_string(graph_.layers.size());
  l.in_h = l.out_h = h_;
  l.in_w = l.out_w = w_;
  l.in_c = l.out_c = c_;
  graph_.layers.push_back(std::move(l));
  return graph_.layers.back();
}

void RandomGraphBuilder::finish_conv(KerasLayer& l, int k_h, int k_w, int stride, bool same,
                                     int out_c) {
  l.k_h = k_h, l.k_w = k_w;
  l.stride_h = l.stride_w = stride;
  l.same_padding = same;
  const AxisGeometry gy = same ? same_padding(h_, k_h, stride) : valid_padding(h_, k_h, stride);
  const AxisGeometry gx = same ? same_padding(w_, k_w, stride) : valid_padding(w_, k_w, stride);
  l.out_h = gy.out, l.out_w = gx.out, l.out_c = out_c;
  h_ = l.out_h, w_ = l.out_w, c_ = out_c;
}

RandomGraphBuilder& RandomGraphBuilder::conv2d(int filters, int k, int stride, bool same,
                                               bool use_bias) {
  KerasLayer& l = start(KerasLayerType::kConv2D, "Conv2D", "conv2d");
  l.filters = filters;
  l.use_bias = use_bias;
  const double a = std::sqrt(3.0 / (k * k * c_));
  l.vars.push_back({{k, k, c_, filters}, uniform(std::size_t(k) * k * c_ * filters, a)});
  if (use_bias) l.vars.push_back({{filters}, uniform(filters, 0.1)});
  finish_conv(l, k, k, stride, same, filters);
  return *this;
}

RandomGraphBuilder& RandomGraphBuilder::separable(int filters, int k, int stride, bool same,
                                                  bool use_bias) {
  KerasLayer& l = start(KerasLayerType::kSeparableConv2D, "SeparableConv2D", "separable_conv2d");
  l.filters = filters;
  l.use_bias = use_bias;
  l.vars.push_back({{k, k, c_, 1}, uniform(std::size_t(k) * k * c_, std::sqrt(3.0 / (k * k)))});
  l.vars.push_back({{1, 1, c_, filters}, uniform(std::size_t(c_) * filters, std::sqrt(3.0 / c_))});
  if (use_bias) l.vars.push_back({{filters}, uniform(filters, 0.1)});
  finish_conv(l, k, k, stride, same, filters);
  return *this;
}

RandomGraphBuilder& RandomGraphBuilder::depthwise(int k_h, int k_w, int stride, bool same,
                                                  bool use_bias) {
  KerasLayer& l = start(KerasLayerType::kDepthwiseConv2D, "DepthwiseConv2D", "depthwise_conv2d");
  l.use_bias = use_bias;
  l.vars.push_back(
      {{k_h, k_w, c_, 1}, uniform(std::size_t(k_h) * k_w * c_, std::sqrt(3.0 / (k_h * k_w)))});
  if (use_bias) l.vars.push_back({{c_}, uniform(c_, 0.1)});
  finish_conv(l, k_h, k_w, stride, same, c_);
  return *this;
}

RandomGraphBuilder& RandomGraphBuilder::batchnorm(double epsilon) {
  KerasLayer& l =
      start(KerasLayerType::kBatchNormalization, "BatchNormalization", "batch_normalization");
  l.epsilon = epsilon;
  std::vector<float> gamma = random_floats(c_, 0.3, 1.5, rng_);
  std::bernoulli_distribution flip(0.25);
  for (float& g : gamma) g = flip(rng_) ? -g : g;
  l.vars.push_back({{c_}, gamma});
  l.vars.push_back({{c_}, random_floats(c_, -0.3, 0.3, rng_)});
  l.vars.push_back({{c_}, random_floats(c_, -0.5, 0.5, rng_)});
  l.vars.push_back({{c_}, random_floats(c_, 0.01, 4.0, rng_)});
  return *this;
}

RandomGraphBuilder& RandomGraphBuilder::relu() {
  KerasLayer& l = start(KerasLayerType::kActivation, "Activation", "activation");
  l.relu = true;
  return *this;
}

RandomGraphBuilder& RandomGraphBuilder::flatten() {
  KerasLayer& l = start(KerasLayerType::kFlatten, "Flatten", "flatten");
  l.out_h = l.out_w = 1;
  l.out_c = h_ * w_ * c_;
  h_ = w_ = 1, c_ = l.out_c;
  return *this;
}

RandomGraphBuilder& RandomGraphBuilder::dense(int units, bool use_bias) {
  KerasLayer& l = start(KerasLayerType::kDense, "Dense", "dense");
  l.filters = l.out_c = units;
  l.use_bias = use_bias;
  l.vars.push_back({{c_, units}, uniform(std::size_t(c_) * units, std::sqrt(3.0 / c_))});
  if (use_bias) l.vars.push_back({{units}, uniform(units, 0.1)});
  c_ = units;
  return *this;
}

// ---- Comparisons ------------------------------------------------------------------------------

std::string CloseReport::describe() const {
  std::ostringstream os;
  os.precision(9);
  if (size_mismatch != 0) {
    os << "sizes differ (got - want = " << size_mismatch << ")";
    return os.str();
  }
  os << non_finite << " non-finite, " << violations << " beyond tolerance, max |error| "
     << max_abs_error;
  if (worst_index >= 0) {
    os << "; worst at [" << worst_index << "]: got " << worst_got << ", want " << worst_want;
  }
  return os.str();
}

CloseReport compare_close(std::span<const float> got, std::span<const double> want, double atol,
                          double rtol) {
  return compare_impl(got, want, atol, rtol);
}
CloseReport compare_close(std::span<const double> got, std::span<const double> want, double atol,
                          double rtol) {
  return compare_impl(got, want, atol, rtol);
}

double relative_l2_error(std::span<const float> got, std::span<const double> want) {
  return rel_l2_impl(got, want);
}
double relative_l2_error(std::span<const double> got, std::span<const double> want) {
  return rel_l2_impl(got, want);
}

double max_abs(std::span<const double> values) {
  double m = 0;
  for (double v : values) m = std::max(m, std::abs(v));
  return m;
}

std::int64_t first_bitwise_difference(std::span<const float> a, std::span<const float> b) {
  const std::size_t common = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < common; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return static_cast<std::int64_t>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<std::int64_t>(common);
}

}  // namespace stimloop::test
