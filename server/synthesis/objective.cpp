#include "server/synthesis/objective.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace stimloop::synthesis {
namespace {

// max (sign +1) / min (sign -1) of one output; also adversarial up / down.
class OutputObjective final : public Objective {
 public:
  OutputObjective(int outputs, int index, double sign)
      : outputs_(outputs), index_(index), sign_(sign) {}
  void evaluate(std::span<const float> y, int n, std::span<double> values,
                std::span<float> seed) const override {
    std::fill(seed.begin(), seed.end(), 0.0f);
    for (int i = 0; i < n; ++i) {
      values[i] = sign_ * y[i * outputs_ + index_];
      seed[i * outputs_ + index_] = static_cast<float>(sign_);
    }
  }
  double response(std::span<const float> y) const override { return y[index_]; }

 private:
  int outputs_, index_;
  double sign_;
};

// Adversarial toward a target response: maximise -(y_k - R)^2.
class TargetResponseObjective final : public Objective {
 public:
  TargetResponseObjective(int outputs, int index, double target)
      : outputs_(outputs), index_(index), target_(target) {}
  void evaluate(std::span<const float> y, int n, std::span<double> values,
                std::span<float> seed) const override {
    std::fill(seed.begin(), seed.end(), 0.0f);
    for (int i = 0; i < n; ++i) {
      const double d = y[i * outputs_ + index_] - target_;
      values[i] = -d * d;
      seed[i * outputs_ + index_] = static_cast<float>(-2.0 * d);
    }
  }
  double response(std::span<const float> y) const override { return y[index_]; }

 private:
  int outputs_, index_;
  double target_;
};

// one-hot: log of the softmax share of the targets, log(sum_T e^y / sum_all e^y). The log keeps
// the gradient alive when the share is tiny; the argmax is the share's. response() reports the
// share itself.
class OneHotObjective final : public Objective {
 public:
  OneHotObjective(int outputs, std::vector<int> targets)
      : outputs_(outputs), in_target_(outputs, false) {
    for (int t : targets) in_target_[t] = true;
  }
  void evaluate(std::span<const float> y, int n, std::span<double> values,
                std::span<float> seed) const override {
    for (int i = 0; i < n; ++i) {
      const float* row = y.data() + i * outputs_;
      const double peak = *std::max_element(row, row + outputs_);
      double all = 0.0, targets = 0.0;
      for (int k = 0; k < outputs_; ++k) {
        const double e = std::exp(row[k] - peak);
        all += e;
        if (in_target_[k]) targets += e;
      }
      values[i] = std::log(targets) - std::log(all);
      for (int k = 0; k < outputs_; ++k) {
        const double e = std::exp(row[k] - peak);
        seed[i * outputs_ + k] = static_cast<float>((in_target_[k] ? e / targets : 0.0) - e / all);
      }
    }
  }
  double response(std::span<const float> y) const override {
    double v;
    std::vector<float> seed(outputs_);
    evaluate(y, 1, std::span(&v, 1), seed);
    return std::exp(v);
  }

 private:
  int outputs_;
  std::vector<bool> in_target_;
};

// contrast: mean of the targets minus mean of the others.
class ContrastObjective final : public Objective {
 public:
  ContrastObjective(int outputs, const std::vector<int>& targets) : weights_(outputs) {
    const double n_t = static_cast<double>(targets.size());
    const double n_rest = static_cast<double>(outputs) - n_t;
    std::vector<bool> in(outputs, false);
    for (int t : targets) in[t] = true;
    for (int k = 0; k < outputs; ++k)
      weights_[k] = in[k] ? 1.0 / n_t : (n_rest > 0 ? -1.0 / n_rest : 0.0);
  }
  void evaluate(std::span<const float> y, int n, std::span<double> values,
                std::span<float> seed) const override {
    const int m = static_cast<int>(weights_.size());
    for (int i = 0; i < n; ++i) {
      double v = 0.0;
      for (int k = 0; k < m; ++k) {
        v += weights_[k] * y[i * m + k];
        seed[i * m + k] = static_cast<float>(weights_[k]);
      }
      values[i] = v;
    }
  }
  double response(std::span<const float> y) const override {
    double v = 0.0;
    for (std::size_t k = 0; k < weights_.size(); ++k) v += weights_[k] * y[k];
    return v;
  }

 private:
  std::vector<double> weights_;
};

// match: minus the mean squared error to a response vector (over the targets when given, else
// over all outputs).
class MatchObjective final : public Objective {
 public:
  MatchObjective(int outputs, std::vector<double> target, const std::vector<int>& targets)
      : outputs_(outputs), target_(std::move(target)) {
    if (targets.empty()) {
      for (int k = 0; k < outputs; ++k) used_.push_back(k);
    } else {
      used_ = targets;
    }
  }
  void evaluate(std::span<const float> y, int n, std::span<double> values,
                std::span<float> seed) const override {
    std::fill(seed.begin(), seed.end(), 0.0f);
    const double scale = 1.0 / static_cast<double>(used_.size());
    for (int i = 0; i < n; ++i) {
      double v = 0.0;
      for (int k : used_) {
        const double d = y[i * outputs_ + k] - target_[k];
        v -= scale * d * d;
        seed[i * outputs_ + k] = static_cast<float>(-2.0 * scale * d);
      }
      values[i] = v;
    }
  }
  double response(std::span<const float> y) const override {
    double v;
    std::vector<float> seed(outputs_);
    evaluate(y, 1, std::span(&v, 1), seed);
    return v;
  }

 private:
  int outputs_;
  std::vector<double> target_;
  std::vector<int> used_;
};

// channel: mean over positions of channel C of the truncated network's last activation map.
class ChannelObjective final : public Objective {
 public:
  ChannelObjective(int h, int w, int c, int channel) : h_(h), w_(w), c_(c), channel_(channel) {}
  void evaluate(std::span<const float> y, int n, std::span<double> values,
                std::span<float> seed) const override {
    std::fill(seed.begin(), seed.end(), 0.0f);
    const std::int64_t per_image = std::int64_t{h_} * w_ * c_;
    const float weight = 1.0f / static_cast<float>(h_ * w_);
    for (int i = 0; i < n; ++i) {
      values[i] = response(y.subspan(i * per_image, per_image));
      for (std::int64_t p = 0; p < std::int64_t{h_} * w_; ++p) {
        seed[i * per_image + p * c_ + channel_] = weight;
      }
    }
  }
  double response(std::span<const float> y) const override {
    double total = 0.0;
    for (std::int64_t p = 0; p < std::int64_t{h_} * w_; ++p) total += y[p * c_ + channel_];
    return total / (double(h_) * w_);
  }

 private:
  int h_, w_, c_, channel_;
};

}  // namespace

std::vector<int> keras_layer_ends(const Network& network) {
  std::vector<int> ends;
  for (std::size_t i = 0; i < network.layers.size(); ++i) {
    const std::string& name = network.layers[i].name;
    const std::string suffix = "/depthwise";
    const bool depthwise_half =
        name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (!depthwise_half) ends.push_back(static_cast<int>(i));
  }
  return ends;
}

StatusOr<ObjectiveSetup> make_objective(const SynthesisRequest& r,
                                        std::shared_ptr<const Network> net) {
  ObjectiveSetup setup;
  const int outputs = static_cast<int>(net->num_outputs());
  auto check_index = [&](int k) -> Status {
    if (k < 0 || k >= outputs) {
      return out_of_range("--output-index " + std::to_string(k) + " is outside 0.." +
                          std::to_string(outputs - 1) + " (the model has " +
                          std::to_string(outputs) + " output" + (outputs == 1 ? "" : "s") + ")");
    }
    return Status::Ok();
  };
  switch (r.objective) {
    case ObjectiveKind::kMax:
    case ObjectiveKind::kMin: {
      RETURN_IF_ERROR(check_index(r.output_index));
      const double sign = r.objective == ObjectiveKind::kMax ? 1.0 : -1.0;
      setup.objective = std::make_unique<OutputObjective>(outputs, r.output_index, sign);
      setup.description =
          std::string(to_string(r.objective)) + " of output " + std::to_string(r.output_index);
      break;
    }
    case ObjectiveKind::kAdversarial:
      RETURN_IF_ERROR(check_index(r.output_index));
      if (r.direction == Direction::kTarget) {
        setup.objective =
            std::make_unique<TargetResponseObjective>(outputs, r.output_index, r.target_response);
      } else {
        setup.objective = std::make_unique<OutputObjective>(
            outputs, r.output_index, r.direction == Direction::kUp ? 1.0 : -1.0);
      }
      setup.description = "adversarial " + std::string(to_string(r.direction)) + " on output " +
                          std::to_string(r.output_index);
      break;
    case ObjectiveKind::kPopulation: {
      if (outputs < 2) {
        return invalid_argument(
            "--objective population needs a multi-output (shared) model; "
            "this one has 1 output");
      }
      std::set<int> unique;
      for (int t : r.targets) {
        if (t >= outputs) {
          return out_of_range("--targets index " + std::to_string(t) + " is outside 0.." +
                              std::to_string(outputs - 1));
        }
        if (!unique.insert(t).second) {
          return invalid_argument("--targets lists " + std::to_string(t) + " twice");
        }
      }
      if (r.mode == PopulationMode::kContrast && unique.size() == std::size_t(outputs)) {
        return invalid_argument("--mode contrast needs at least one output outside --targets");
      }
      if (r.mode == PopulationMode::kMatch && r.target_responses.size() != std::size_t(outputs)) {
        return invalid_argument("--target-responses holds " +
                                std::to_string(r.target_responses.size()) +
                                " values; the model has " + std::to_string(outputs) + " outputs");
      }
      switch (r.mode) {
        case PopulationMode::kOneHot:
          setup.objective = std::make_unique<OneHotObjective>(outputs, r.targets);
          break;
        case PopulationMode::kContrast:
          setup.objective = std::make_unique<ContrastObjective>(outputs, r.targets);
          break;
        case PopulationMode::kMatch:
          setup.objective =
              std::make_unique<MatchObjective>(outputs, r.target_responses, r.targets);
          break;
      }
      setup.description = std::string("population ") + to_string(r.mode);
      break;
    }
    case ObjectiveKind::kChannel: {
      const std::vector<int> ends = keras_layer_ends(*net);
      if (r.layer < 0 || r.layer >= static_cast<int>(ends.size())) {
        return out_of_range("--layer " + std::to_string(r.layer) + " is outside 0.." +
                            std::to_string(ends.size() - 1));
      }
      const int end = ends[r.layer];
      const LayerParams& p = net->layers[end].params;
      if (r.channel < 0 || r.channel >= p.out_c) {
        return out_of_range("--channel " + std::to_string(r.channel) + " is outside 0.." +
                            std::to_string(p.out_c - 1) + " for layer " + std::to_string(r.layer) +
                            " ('" + net->layers[end].name + "')");
      }
      auto prefix = std::make_shared<Network>();
      prefix->in_h = net->in_h, prefix->in_w = net->in_w, prefix->in_c = net->in_c;
      prefix->layers.assign(net->layers.begin(), net->layers.begin() + end + 1);
      setup.objective = std::make_unique<ChannelObjective>(p.out_h, p.out_w, p.out_c, r.channel);
      setup.description = "channel " + std::to_string(r.channel) + " of layer " +
                          std::to_string(r.layer) + " ('" + net->layers[end].name + "')";
      net = std::move(prefix);
      break;
    }
  }
  setup.network = std::move(net);
  return setup;
}

}  // namespace stimloop::synthesis
