// Double-precision references for tests: naive loops, written independently of kernels/cpu
// (backward in scatter form where the CPU kernels gather), so agreement means something.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/layer_params.h"
#include "kernels/network.h"
#include "models/keras_graph.h"

namespace stimloop::test {

// One op on n images, channels-last; applies p.relu. bias may be empty when !p.has_bias.
std::vector<double> ref_layer_forward(const LayerParams& p, int n, const std::vector<double>& in,
                                      const std::vector<double>& w,
                                      const std::vector<double>& bias);
// d/d(input) given d/d(pre-activation output); ignores p.relu (the caller masks).
std::vector<double> ref_layer_backward_input(const LayerParams& p, int n,
                                             const std::vector<double>& d_out,
                                             const std::vector<double>& w);

struct RefResult {
  std::vector<double> outputs;  // n x num_outputs
  std::vector<double> d_input;  // n x input size; empty when no seed was given
};

// Forward (and, when seed != nullptr, the vector-Jacobian product sum_k seed[i,k] out[i,k]
// back to the input) of a compiled network, in double.
RefResult ref_network(const Network& net, const std::vector<double>& images, int n,
                      const std::vector<double>* seed = nullptr);

// The same on the unfolded Keras graph: BatchNorm applied as Keras does, separable convolutions
// as depthwise then pointwise, Flatten as a reshape, in double. The independent check of
// compile_network's folding.
RefResult ref_keras_graph(const KerasGraph& graph, const std::vector<double>& images, int n,
                          const std::vector<double>* seed = nullptr);

// Sign pattern of every ReLU input (true where > 0), layer after layer, image after image: a
// finite-difference test skips steps whose two ends (x - h, x + h) give different patterns,
// since the function has a kink between them.
std::vector<bool> ref_network_relu_pattern(const Network& net, const std::vector<double>& images,
                                           int n);
std::vector<bool> ref_keras_graph_relu_pattern(const KerasGraph& graph,
                                               const std::vector<double>& images, int n);

// ---- Random data and small random models for tests ---------------------------------------

// n values uniform in [lo, hi), rounded to float: tests feed the same values, widened, to the
// double references, so input rounding is no source of disagreement.
std::vector<float> random_floats(std::size_t n, double lo, double hi, std::mt19937& rng);
std::vector<double> to_double(std::span<const float> values);

// Op chains with random weights, uniform(-a, a) with a = sqrt(3 / fan_in) (unit-variance
// activations stay O(1) through the chain), and biases uniform(-0.1, 0.1). Shapes follow from
// the previous op; 'same' padding as TensorFlow computes it.
class RandomNetworkBuilder {
 public:
  RandomNetworkBuilder(int h, int w, int c, std::uint32_t seed);
  RandomNetworkBuilder& conv2d(int out_c, int k, int stride, bool same, bool relu,
                               bool bias = true);
  RandomNetworkBuilder& depthwise(int k, int stride, bool same, bool relu, bool bias = true);
  RandomNetworkBuilder& pointwise(int out_c, bool relu, bool bias = true);
  // Flatten + Dense: a pointwise op reading the whole previous output as one 1 x 1 x (h*w*c) pixel.
  RandomNetworkBuilder& dense(int out_c, bool relu = false, bool bias = true);
  const Network& network() const { return net_; }

 private:
  RandomNetworkBuilder& add(LayerParams p);
  Network net_;
  int h_, w_, c_;
  std::mt19937 rng_;
};

// Keras layer chains as the importer would produce them (vars layout of keras_graph.h, Keras
// auto-names as weights_group), with random weights; batchnorm() draws non-trivial statistics
// (gamma of either sign, beta, mean, variance in [0.01, 4)).
class RandomGraphBuilder {
 public:
  RandomGraphBuilder(int h, int w, int c, std::uint32_t seed);
  RandomGraphBuilder& conv2d(int filters, int k, int stride, bool same, bool use_bias = true);
  RandomGraphBuilder& separable(int filters, int k, int stride, bool same, bool use_bias = true);
  RandomGraphBuilder& depthwise(int k_h, int k_w, int stride, bool same, bool use_bias = true);
  RandomGraphBuilder& batchnorm(double epsilon = 0.001);
  RandomGraphBuilder& relu();
  RandomGraphBuilder& flatten();
  RandomGraphBuilder& dense(int units, bool use_bias = true);
  const KerasGraph& graph() const { return graph_; }

 private:
  KerasLayer& start(KerasLayerType type, const char* class_name, const char* auto_name);
  void finish_conv(KerasLayer& l, int k_h, int k_w, int stride, bool same, int out_c);
  std::vector<float> uniform(std::size_t n, double a);
  KerasGraph graph_;
  int h_, w_, c_;
  std::mt19937 rng_;
  int counter_[7] = {};  // layers made so far, per KerasLayerType, for the Keras auto-names
};

// Element-wise comparison of a float result with a double reference: |got - want| <= atol +
// rtol * |want|, after checking that every value is finite.
struct CloseReport {
  std::int64_t size_mismatch = 0;  // nonzero when the two lengths differ
  std::int64_t non_finite = 0;     // NaN or Inf in got
  std::int64_t violations = 0;
  std::int64_t worst_index = -1;  // the element furthest beyond its bound
  double worst_got = 0, worst_want = 0;
  double max_abs_error = 0;
  bool ok() const { return size_mismatch == 0 && non_finite == 0 && violations == 0; }
  std::string describe() const;
};
CloseReport compare_close(std::span<const float> got, std::span<const double> want, double atol,
                          double rtol);
CloseReport compare_close(std::span<const double> got, std::span<const double> want, double atol,
                          double rtol);

// ||got - want||_2 / ||want||_2 (the plain error norm when want is zero).
double relative_l2_error(std::span<const float> got, std::span<const double> want);
double relative_l2_error(std::span<const double> got, std::span<const double> want);
double max_abs(std::span<const double> values);

// The first index at which a and b differ bit for bit (the shorter length when only the lengths
// differ), or -1 when they are identical. For determinism checks, where "equal within rounding"
// is not enough; a plain CHECK(a == b) on long vectors would also print every element on failure.
std::int64_t first_bitwise_difference(std::span<const float> a, std::span<const float> b);

}  // namespace stimloop::test
