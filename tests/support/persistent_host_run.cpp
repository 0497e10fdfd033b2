#include "tests/support/persistent_host_run.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/synthesis_state.h"

namespace stimloop::test {

StatusOr<std::unique_ptr<PersistentHostRun>> PersistentHostRun::create(
    const Cowley2026Settings& settings, std::vector<HostTarget> targets, bool reverse_items) {
  if (targets.empty()) return invalid_argument("no targets");
  std::unique_ptr<PersistentHostRun> run(new PersistentHostRun());
  run->settings_ = settings;
  run->reverse_items_ = reverse_items;
  const Network& first = *targets[0].network;
  run->h_ = first.in_h;
  run->w_ = first.in_w;
  const int layers = static_cast<int>(first.layers.size());
  const std::int64_t size = first.input_size();
  for (HostTarget& t : targets) {
    const Network& net = *t.network;
    if (net.in_h != run->h_ || net.in_w != run->w_ || net.in_c != 3 ||
        static_cast<int>(net.layers.size()) != layers) {
      return invalid_argument("targets must share the input size and depth");
    }
    if (t.images.size() != std::size_t(t.count) * size) return invalid_argument("image count");
    TargetState s;
    s.first_image = run->n_;
    run->n_ += t.count;
    std::int64_t widest = 0;
    for (const NetworkLayer& layer : net.layers) {
      s.activations.emplace_back(std::size_t(t.count) * layer.params.out_size());
      widest = std::max({widest, layer.params.in_size(), layer.params.out_size()});
    }
    s.grad_a.resize(std::size_t(t.count) * widest);
    s.grad_b.resize(std::size_t(t.count) * widest);
    s.seed.assign(std::size_t(t.count) * net.num_outputs(), 0.0f);
    for (int i = 0; i < t.count; ++i) {
      s.seed[std::size_t(i) * net.num_outputs() + t.output] = static_cast<float>(t.sign);
    }
    s.target = std::move(t);
    run->targets_.push_back(std::move(s));
  }
  const int n = run->n_;
  run->input_.resize(std::size_t(n) * size);
  run->d_input_.resize(std::size_t(n) * size);
  run->scratch_.resize(std::size_t(n) * size);
  run->row_sums_.resize(std::size_t(n) * run->h_);
  run->improved_.assign(n, 0);
  run->has_best_.assign(n, 0);
  for (const TargetState& s : run->targets_) {
    run->x_.insert(run->x_.end(), s.target.images.begin(), s.target.images.end());
    for (int i = 0; i < s.target.count; ++i) {
      run->best_value_.push_back(s.target.initial_best);
      run->best_response_.push_back(std::nan(""));
      ImageSlot slot{};
      slot.gradient = run->d_input_.data() + (s.first_image + i) * size;
      slot.input = run->input_.data() + (s.first_image + i) * size;
      slot.outputs = s.activations.back().data() + i * s.target.network->num_outputs();
      slot.output = s.target.output;
      slot.sign = s.target.sign;
      run->slots_.push_back(slot);
    }
  }
  run->best_ = run->x_;
  for (std::size_t j = 0; j < run->x_.size(); ++j) run->input_[j] = static_cast<float>(run->x_[j]);

  // The table; the backward buffers follow once the fusions are decided, as on the device
  // (device_synthesis.cu).
  const int T = static_cast<int>(run->targets_.size());
  run->table_.resize(std::size_t(layers) * T);
  for (int l = 0; l < layers; ++l) {
    for (int t = 0; t < T; ++t) {
      TargetState& s = run->targets_[t];
      const NetworkLayer& layer = s.target.network->layers[l];
      persistent::PlanLayer& e = run->table_[std::size_t(l) * T + t];
      e.p = layer.params;
      e.count = s.target.count;
      e.first_image = s.first_image;
      e.w = layer.weights.data();
      s.weight_copies.push_back(
          persistent::layer_weight_copies(layer.params, layer.weights.data()));
      const persistent::LayerWeightCopies& copies = s.weight_copies.back();
      e.w_t = copies.transposed.empty() ? nullptr : copies.transposed.data();
      e.w_blocked = copies.padded.empty() ? nullptr : copies.padded.data();
      e.bias = layer.params.has_bias ? layer.bias.data() : nullptr;
      e.in = l == 0 ? run->input_.data() + s.first_image * size : s.activations[l - 1].data();
      e.out = s.activations[l].data();
      e.relu_out = layer.params.relu ? s.activations[l].data() : nullptr;
    }
  }
  persistent::Plan& plan = run->plan_;
  plan.targets = T;
  plan.layers = layers;
  plan.table = run->table_.data();
  persistent::number_items(run->table_.data(), plan);
  persistent::plan_fusions(run->table_.data(), plan);
  plan.constant_top = persistent::top_gradient_is_constant(run->table_.data(), plan);
  std::vector<persistent::TargetGradients> gradients(T);
  for (int t = 0; t < T; ++t) {
    TargetState& s = run->targets_[t];
    s.top_grad.resize(std::size_t(s.target.count) *
                      s.target.network->layers.back().params.in_size());
    gradients[t] = {s.grad_a.data(), s.grad_b.data(), run->d_input_.data() + s.first_image * size,
                    s.seed.data(), s.top_grad.data()};
  }
  persistent::assign_backward_buffers(run->table_.data(), plan, gradients.data());
  persistent::plan_premasks(run->table_.data(), plan);
  ImageState& st = plan.images;
  st.n = n;
  st.h = run->h_;
  st.w = run->w_;
  st.slots = run->slots_.data();
  st.x = run->x_.data();
  st.best = run->best_.data();
  st.scratch = run->scratch_.data();
  st.best_value = run->best_value_.data();
  st.best_response = run->best_response_.data();
  st.improved = run->improved_.data();
  st.has_best = run->has_best_.data();
  plan.row_sums = run->row_sums_.data();
  plan.step.step_size = settings.step_size;
  plan.step.grayscale = settings.grayscale;
  for (int c = 0; c < 3; ++c) plan.step.means[c] = settings.means[c];
  ASSIGN_OR_RETURN(plan.step.gradient_blur, make_blur_taps(settings.gradient_sigma));
  ASSIGN_OR_RETURN(plan.image_blur, make_blur_taps(settings.image_sigma));

  run->run_steps(0, true);
  return run;
}

template <class Exec>
void PersistentHostRun::evaluate_and_run(Exec& ex, int steps, bool evaluate_first) {
  if (evaluate_first) persistent::initial_evaluation(ex, plan_);
  const int every = settings_.image_sigma > 0 ? std::max(settings_.image_blur_every, 0) : 0;
  for (int k = 0; k < steps; ++k, ++steps_done_) {
    persistent::step(ex, plan_, persistent::is_blur_step(steps_done_, every));
  }
}

void PersistentHostRun::run_steps(int steps, bool evaluate_first) {
  if (reverse_items_) {
    ReverseExecutor ex;
    evaluate_and_run(ex, steps, evaluate_first);
  } else {
    persistent::SerialExecutor ex;
    evaluate_and_run(ex, steps, evaluate_first);
  }
}

std::vector<std::uint8_t> PersistentHostRun::best_rgb8() const {
  const std::size_t size = std::size_t(h_) * w_ * 3;
  std::vector<std::uint8_t> out(x_.size());
  for (std::size_t j = 0; j < out.size(); ++j) {
    // x where no step improved on the start, and where an improvement is still pending (improved
    // set, x not yet copied into best: x is the best image).
    const bool from_best = has_best_[j / size] != 0 && improved_[j / size] == 0;
    const double v = from_best ? best_[j] : x_[j];
    const double raw = std::nearbyint(v + settings_.means[j % 3]);
    out[j] = static_cast<std::uint8_t>(std::clamp(raw, 0.0, 255.0));
  }
  return out;
}

}  // namespace stimloop::test
