// The persistent synthesis program (kernels/persistent_step.h), run on the CPU with its serial
// executor (tests/support/persistent_host_run.h), against the host cowley2026 loop on the CPU
// backend (server/synthesis/, the reference): the same phases, item numbering and buffer roles
// the GPU kernel runs, checked here where there is no GPU. Both sides start from the host loop's
// seeded noise and cross the authors' image blur at step 50.
//
// The network is a small compact-model-shaped one built here (24 x 24 input, every layer kind,
// plain and warp-split sums, strides 1 and 2): the serial run costs about a term a nanosecond,
// and the 112 x 112 demo model took minutes. The float32 sums differ from the CPU backend's in
// order only, so best values agree to 1e-5 and 99 % of 8-bit pixels are identical; a wrong index,
// phase order or missing step moves results by O(1).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "models/model.h"
#include "server/synthesis/image_ops.h"
#include "server/synthesis/synthesis_run.h"
#include "tests/support/persistent_host_run.h"
#include "tests/support/synthesis_fixtures.h"

namespace {

using stimloop::Network;
using stimloop::test::HostTarget;
using stimloop::test::PersistentHostRun;
namespace synthesis = stimloop::synthesis;

// A compact-model-shaped network: conv 5x5 3 -> f0 (ReLU), then separable stages (depthwise
// k x k at a stride, no bias or ReLU; pointwise to `filters` with bias and ReLU), then Flatten +
// Dense to `outputs` as a 1x1 convolution over a 1x1 image (kernels/layer_params.h). Weights
// uniform(+-sqrt(3 / fan_in)), seeded.
struct Stage {
  int k, stride, filters;
};
std::shared_ptr<const Network> compact_shaped(int image_side, int f0,
                                              const std::vector<Stage>& stages, int outputs,
                                              unsigned seed, bool top_relu = false) {
  auto net = std::make_shared<Network>();
  net->in_h = net->in_w = image_side;
  net->in_c = 3;
  std::mt19937 rng(seed);
  int side = image_side, channels = 3;
  auto add = [&](stimloop::LayerKind kind, int k, int stride, int out_c, bool bias, bool relu) {
    stimloop::LayerParams p;
    p.kind = kind;
    p.in_h = p.in_w = side;
    p.in_c = channels;
    p.out_c = kind == stimloop::LayerKind::kDepthwise ? channels : out_c;
    p.k_h = p.k_w = k;
    p.stride_h = p.stride_w = stride;
    const stimloop::AxisGeometry g = stimloop::same_padding(side, k, stride);
    p.out_h = p.out_w = g.out;
    p.pad_top = p.pad_left = g.pad_before;
    p.has_bias = bias;
    p.relu = relu;
    const double fan_in =
        kind == stimloop::LayerKind::kDepthwise ? k * k : double(k) * k * channels;
    std::uniform_real_distribution<float> weight(-std::sqrt(3.0 / fan_in), std::sqrt(3.0 / fan_in));
    std::uniform_real_distribution<float> offset(-0.1f, 0.3f);
    stimloop::NetworkLayer layer;
    layer.params = p;
    for (std::int64_t i = 0; i < p.weight_count(); ++i) layer.weights.push_back(weight(rng));
    for (std::int64_t i = 0; i < p.bias_count(); ++i) layer.bias.push_back(offset(rng));
    net->layers.push_back(std::move(layer));
    side = p.out_h;
    channels = p.out_c;
  };
  using stimloop::LayerKind;
  add(LayerKind::kConv2D, 5, 1, f0, true, true);
  for (const Stage& st : stages) {
    add(LayerKind::kDepthwise, st.k, st.stride, 0, false, false);
    add(LayerKind::kPointwise, 1, 1, st.filters, true, true);
  }
  channels = side * side * channels;
  side = 1;
  add(LayerKind::kPointwise, 1, 1, outputs, true, top_relu);
  return net;
}

// The small network of these tests, on 24 x 24 images: conv 5x5 3 -> 8 (its backward sum of 200
// terms runs warp-split), separable 5x5 stride 2 (8 -> 6), separable 3x3 stride 2 (6 -> 5), Dense
// 180 -> `outputs` (warp-split forward). Both separable layers fuse both ways (persistent_step.h's
// kFuseChannels); `wide` makes the first one 8 -> 12, so that its backward and the second one's
// forward run unfused.
std::shared_ptr<const Network> small_network(int outputs, unsigned seed, bool wide = false) {
  return compact_shaped(24, 8, {{5, 2, wide ? 12 : 6}, {3, 2, 5}}, outputs, seed);
}

using stimloop::test::initial_images;
using stimloop::test::settings_of;

synthesis::SynthesisRequest request(bool maximise, int output, int count, std::uint64_t seed,
                                    int steps) {
  return stimloop::test::cowley2026_request(maximise, output, count, seed, steps);
}

HostTarget target_of(std::shared_ptr<const Network> net, int output, bool maximise, int count,
                     std::uint64_t seed, bool grayscale = false) {
  HostTarget t;
  t.images = initial_images(*net, seed, count);
  if (grayscale) synthesis::to_grayscale(t.images, stimloop::kV4ChannelMeans);  // as SynthesisRun
  t.network = std::move(net);
  t.output = output;
  t.sign = maximise ? 1.0 : -1.0;
  t.initial_best = maximise ? 0.0 : -1e5;
  t.count = count;
  return t;
}

// `readout_relu`: a conv and a Dense readout with a ReLU instead of small_network, so that the
// top gradient is not constant and the readout's backward writes layer 0's gradient pre-masked.
void compare_with_host_loop(bool maximise, bool grayscale, bool wide = false,
                            bool readout_relu = false) {
  const auto net =
      readout_relu ? compact_shaped(16, 8, {}, 2, 5, /*top_relu=*/true) : small_network(2, 5, wide);
  const int count = 2, steps = 60;
  const std::uint64_t seed = 11;
  auto r = request(maximise, 0, count, seed, steps);
  r.grayscale = grayscale;
  auto run = PersistentHostRun::create(settings_of(r),
                                       {target_of(net, 0, maximise, count, seed, grayscale)});
  REQUIRE(run.ok());
  // The paths this network is meant to exercise are the ones planned.
  const stimloop::persistent::Plan& plan = (*run)->plan();
  CHECK(plan.constant_top != readout_relu);
  if (!readout_relu) {
    CHECK(plan.fuse_forward[1]);
    CHECK(plan.fuse_backward[1] != wide);
    CHECK(plan.fuse_forward[3] != wide);
    CHECK(plan.fuse_backward[3]);
  }
  CHECK(plan.table[0].d_out_masked);  // layer 0's gradient comes masked by layer 1's backward
  CHECK(plan.table[1].mask_d_in == plan.table[0].relu_out);
  (*run)->run(steps);
  const auto pixels = (*run)->best_rgb8();

  auto cpu = stimloop::make_cpu_backend();
  auto host_run = synthesis::SynthesisRun::create(r, stimloop::kV4ChannelMeans, *cpu, net, nullptr,
                                                  /*allow_device_loop=*/false);
  REQUIRE(host_run.ok());
  auto host = synthesis::run_synthesis(**host_run, {});
  REQUIRE(host.ok());
  const std::size_t size = net->input_size();
  double worst_value = 0;
  std::size_t differing = 0;
  for (int i = 0; i < count; ++i) {
    const auto& st = host->stimuli[i];
    CHECK((*run)->has_best()[i] == 1);
    worst_value =
        std::max(worst_value, std::abs((*run)->best_values()[i] - st.best_objective_float) /
                                  std::max(1.0, std::abs(st.best_objective_float)));
    for (std::size_t j = 0; j < size; ++j) differing += pixels[i * size + j] != st.pixels[j];
  }
  const double identical = 1.0 - double(differing) / double(count * size);
  std::cout << "persistent program (CPU) vs host loop, " << (maximise ? "max" : "min")
            << (grayscale ? " gray" : "") << (wide ? " wide" : "")
            << (readout_relu ? " readout-relu" : "") << ": best values differ by " << worst_value
            << " (relative), " << 100 * identical << " % of 8-bit pixels identical\n";
  CHECK(worst_value <= 1e-5);
  CHECK(identical >= 0.99);
}

}  // namespace

TEST_CASE("Persistent step program tracks the host loop", "[synthesis][persistent]") {
  compare_with_host_loop(true, false);
  compare_with_host_loop(false, false);
  compare_with_host_loop(true, true);
  compare_with_host_loop(true, false, /*wide=*/true);
  compare_with_host_loop(true, false, false, /*readout_relu=*/true);
}

TEST_CASE("Persistent step program: targets run together equal each target alone",
          "[synthesis][persistent]") {
  // Items of several models with different shapes share each phase (found from each worker's
  // last target, or by binary search over the targets' first items); a wrong mapping mixes
  // models up. `narrow` reads out 72 values (a plain-form Dense, where the others' 180 run
  // warp-split), so each form of that phase has a target without items.
  const auto single = small_network(1, 21);
  const auto population = small_network(4, 22);
  const auto narrow = compact_shaped(24, 8, {{5, 2, 6}, {3, 2, 2}}, 2, 23);
  REQUIRE(single->layers.size() == population->layers.size());
  REQUIRE(narrow->layers.size() == single->layers.size());
  const auto r = request(true, 0, 1, 3, 55);
  const std::vector<HostTarget> targets = {
      target_of(single, 0, true, 2, 3), target_of(narrow, 1, true, 1, 9),
      target_of(population, 2, true, 1, 5), target_of(population, 3, false, 2, 7)};
  auto together = PersistentHostRun::create(settings_of(r), targets);
  REQUIRE(together.ok());
  (*together)->run(55);
  const auto all_pixels = (*together)->best_rgb8();
  std::size_t image = 0;
  for (const HostTarget& t : targets) {
    auto alone = PersistentHostRun::create(settings_of(r), {t});
    REQUIRE(alone.ok());
    (*alone)->run(55);
    const auto pixels = (*alone)->best_rgb8();
    for (int i = 0; i < t.count; ++i, ++image) {
      CHECK((*alone)->best_values()[i] == (*together)->best_values()[image]);
      CHECK((*alone)->best_responses()[i] == (*together)->best_responses()[image]);
    }
    CHECK(std::equal(pixels.begin(), pixels.end(),
                     all_pixels.begin() + (image - t.count) * (pixels.size() / t.count)));
  }
}

TEST_CASE("Persistent step program: no item reads what its own phase writes",
          "[synthesis][persistent]") {
  // The GPU runs a phase's items in any order at once; the same bits with every phase's items
  // reversed show that no item depends on another of its phase.
  const bool wide = GENERATE(false, true);
  const auto net = small_network(3, 8, wide);
  const auto r = request(true, 1, 2, 4, 55);
  const std::vector<HostTarget> targets = {target_of(net, 1, true, 2, 4),
                                           target_of(net, 2, false, 1, 6)};
  auto forward_order = PersistentHostRun::create(settings_of(r), targets);
  auto reverse_order = PersistentHostRun::create(settings_of(r), targets, /*reverse_items=*/true);
  REQUIRE(forward_order.ok());
  REQUIRE(reverse_order.ok());
  (*forward_order)->run(55);
  (*reverse_order)->run(55);
  CHECK((*forward_order)->best_values() == (*reverse_order)->best_values());
  CHECK((*forward_order)->best_responses() == (*reverse_order)->best_responses());
  CHECK((*forward_order)->best_rgb8() == (*reverse_order)->best_rgb8());
}

TEST_CASE("Persistent step program: barriers a step for a compact model",
          "[synthesis][persistent]") {
  // The median published model's shapes (46, 62, 3, 3, 3 filters on 112 x 112): update 2 phases;
  // forward 8 (the last two depthwise layers fused into their pointwise layers); backward 5 (the
  // Dense readout's gradient constant, the first backward phase shared with the readout's
  // forward, three pointwise backward passes fused into their depthwise layers). A blur step
  // adds a recorded forward pass (8) and the blur (2).
  const auto net = compact_shaped(112, 46, {{5, 2, 62}, {5, 2, 3}, {5, 1, 3}, {5, 1, 3}}, 1, 3);
  stimloop::persistent::Plan plan;
  plan.targets = 1;
  plan.layers = static_cast<int>(net->layers.size());
  std::vector<stimloop::persistent::PlanLayer> table(plan.layers);
  for (int l = 0; l < plan.layers; ++l) {
    table[l].p = net->layers[l].params;
    table[l].count = 1;
  }
  stimloop::persistent::number_items(table.data(), plan);
  stimloop::persistent::plan_fusions(table.data(), plan);
  plan.constant_top = stimloop::persistent::top_gradient_is_constant(table.data(), plan);
  plan.table = table.data();
  plan.images.n = 1;
  plan.images.h = plan.images.w = 112;
  stimloop::persistent::PhaseCounter step, blur_step;
  stimloop::persistent::step(step, plan, false);
  stimloop::persistent::step(blur_step, plan, true);
  std::cout << "median-shaped compact model: " << step.syncs << " barriers a step ("
            << blur_step.syncs << " on blur steps), " << step.items << " worker items and "
            << step.warp_items << " warp items a step\n";
  CHECK(step.syncs == 15);
  CHECK(blur_step.syncs == 25);
  // The names the GPU profile gives the phases (device_synthesis.cu): one a barrier, the items
  // adding up to PhaseCounter's.
  stimloop::persistent::PhaseLog log;
  stimloop::persistent::step(log, plan, false);
  REQUIRE(log.phases.size() == 16);
  CHECK(log.phases.back().what.empty());
  std::int64_t items = 0, warp_items = 0;
  for (const auto& phase : log.phases) {
    std::cout << "  " << phase.what << ": " << phase.items << " items, " << phase.warp_items
              << " warp items\n";
    CHECK((phase.what.empty() == (&phase == &log.phases.back())));
    items += phase.items;
    warp_items += phase.warp_items;
  }
  CHECK(items == step.items);
  CHECK(warp_items == step.warp_items);
  CHECK(log.phases[0].what == "update: y-blur of the gradient, row sums of g^2");
  CHECK(log.phases[2].what == "forward L0");
  CHECK(log.phases[14].what == "backward L0");
}

TEST_CASE("Persistent step program: a constant top gradient is never pre-masked",
          "[synthesis][persistent]") {
  // Conv (ReLU) then a Dense readout without ReLU: the readout's gradient is written once, while
  // the conv's ReLU mask changes with every forward pass, so the conv masks its own terms.
  auto net = compact_shaped(12, 8, {}, 1, 4);
  stimloop::persistent::Plan plan;
  plan.targets = 1;
  plan.layers = static_cast<int>(net->layers.size());
  REQUIRE(plan.layers == 2);
  std::vector<stimloop::persistent::PlanLayer> table(plan.layers);
  std::vector<float> relu_out(net->layers[0].params.out_size()), d_in(relu_out.size());
  for (int l = 0; l < plan.layers; ++l) {
    table[l].p = net->layers[l].params;
    table[l].count = 1;
    table[l].d_in = d_in.data();
  }
  table[0].relu_out = relu_out.data();
  REQUIRE(stimloop::persistent::backward_form(table[0].p) == stimloop::persistent::kBlocked);
  plan.constant_top = stimloop::persistent::top_gradient_is_constant(table.data(), plan);
  REQUIRE(plan.constant_top);
  stimloop::persistent::plan_premasks(table.data(), plan);
  CHECK_FALSE(table[0].d_out_masked);
  CHECK(table[1].mask_d_in == nullptr);
  plan.constant_top = false;  // a readout with a ReLU: its gradient is written every step
  stimloop::persistent::plan_premasks(table.data(), plan);
  CHECK(table[0].d_out_masked);
  CHECK(table[1].mask_d_in == relu_out.data());
}
