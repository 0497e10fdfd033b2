// The whole cowley2026 step (docs/domain.md) as one program of phases separated by barriers, for
// a persistent GPU kernel (kernels/cuda/persistent_synthesis.cu): one launch runs any number of
// steps for many (model, seed) images, with no kernel boundary inside a step. A rig's single
// stimulus is latency-bound: the layered path pays a launch and a dependent-load chain for each
// of ~23 small kernels a step, and this design pays a grid barrier instead.
//
// The program is written once against an executor (`Exec`), which supplies
//   for_each(n, f)                   f(i) for every i in [0, n), spread over all workers;
//   warp_reduce(n, partial, consume) for every item i: total = sum over lanes of
//                                    partial(i, lane, kLanes), then consume(i, lane, total) on
//                                    every lane (a warp and its shuffle tree on the GPU);
//   sync()                           a barrier over all workers (grid.sync() on the GPU).
// Within a phase every item writes only its own outputs and reads only what earlier phases
// wrote, so any order of items gives the same result: SerialExecutor below runs the program on
// the CPU, and the unit tests compare that run with the CPU reference ops and the host loop, and
// with a run whose phases go last item first (tests/support/persistent_host_run.h). A phase's
// closures either end in a sync() of the function that made them or hold their locals by value
// (and the plan by reference), so a deferring executor may run them at the phase's sync().
//
// Per step (t counts from 0; `blur` = the authors' image-blur step):
//   update: [copy improved images to best; y-blur of g; per-row sums of g^2] | [per row:
//           rms scale, x-blur, x += step * scale * blur(g), clip, gray, network input]
//   forward, a phase a layer (the last layer records the best-so-far)
//   blur:   [copy improved; y-blur of x] | [x-blur into x and the input] | forward again
//   backward, a phase a layer, to d objective / d image
// Each [..] is one phase. Fewer phases where the data allow (Plan): a separable layer whose
// pointwise side has few channels runs as one phase each way, a readout without ReLU has a
// constant gradient (computed once), and the first backward phase shares the readout's forward
// phase; a median compact model takes 15 barriers a step (PhaseCounter counts them). The RMS scale
// multiplies the blurred gradient rather than the gradient (blur is linear; the host loop scales
// first): the two differ by float64 rounding only.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/element_ops.h"
#include "kernels/synthesis_state.h"

namespace stimloop::persistent {

constexpr int kLanes = 32;         // workers sharing one warp-reduced item
constexpr int kMaxLayers = 16;     // per model
constexpr int kSplitTerms = 128;   // sums at least this long run split over a warp
constexpr int kChannelBlock = 8;   // output channels of a blocked forward item
constexpr int kPixelChannels = 4;  // at most this many input channels in a pixel backward item
constexpr int kFuseChannels = 8;   // separable layers fuse when the pointwise side has <= this

// Names the loops that follow in the current phase, for an executor that reports where a step's
// time goes (PhaseLog); a no-op for the others, the GPU's included.
template <class Exec>
STIMLOOP_HOST_DEVICE inline void label_phase(Exec& ex, const char* what, int layer = -1) {
  if constexpr (requires { ex.label(what, layer); }) ex.label(what, layer);
}

// How a layer's values are spread over workers, per pass. Forward: kPlain one worker per value;
// kSplit one warp per value (long sums: the Dense readout, a 28 x 28 readout); kBlocked one
// worker per output pixel and kChannelBlock channels (dense convs and pointwise ops: an input
// load serves 8 FMAs). Backward: kPlain; kSplit; kBlocked one warp per input pixel of a dense
// conv with few input channels (layer 0: 3), all its channels at once; kQuad one worker per 2 x 2
// input block of one channel of a stride-2 depthwise layer (one window of output gradients serves
// four inputs: element_ops::depthwise_backward_block2).
enum Form : int { kPlain = 0, kSplit = 1, kBlocked = 2, kQuad = 3 };
constexpr int kForms = 4;

STIMLOOP_HOST_DEVICE inline int forward_form(const LayerParams& p) {
  if (element_ops::forward_terms(p) >= kSplitTerms) return kSplit;
  const bool dense = p.kind == LayerKind::kConv2D || p.kind == LayerKind::kPointwise;
  return dense && p.out_c > 1 ? kBlocked : kPlain;
}
STIMLOOP_HOST_DEVICE inline int backward_form(const LayerParams& p) {
  if (element_ops::backward_terms(p) < kSplitTerms) {
    const bool quad = p.kind == LayerKind::kDepthwise && p.stride_h == 2 && p.stride_w == 2;
    return quad ? kQuad : kPlain;
  }
  return p.kind == LayerKind::kConv2D && p.in_c <= kPixelChannels ? kBlocked : kSplit;
}
// Items of one image in a form.
STIMLOOP_HOST_DEVICE inline std::int64_t forward_items(const LayerParams& p, int form) {
  if (form != kBlocked) return p.out_size();
  return std::int64_t{p.out_h} * p.out_w * ((p.out_c + kChannelBlock - 1) / kChannelBlock);
}
STIMLOOP_HOST_DEVICE inline std::int64_t backward_items(const LayerParams& p, int form) {
  if (form == kQuad) return std::int64_t{(p.in_h + 1) / 2} * ((p.in_w + 1) / 2) * p.in_c;
  return form == kBlocked ? std::int64_t{p.in_h} * p.in_w : p.in_size();
}

// Per-lane sums of several values, reduced together (a warp shuffles each).
template <int N>
struct Sums {
  float v[N];
  STIMLOOP_HOST_DEVICE Sums& operator+=(const Sums& o) {
    for (int k = 0; k < N; ++k) v[k] += o.v[k];
    return *this;
  }
};

// One layer of one target (a model and its `count` seeds), with the buffers of both passes.
struct PlanLayer {
  LayerParams p;
  int count = 0;        // images
  int first_image = 0;  // the target's first image in ImageState
  const float* w = nullptr;
  const float* w_t = nullptr;  // pointwise: the weights transposed (out_c, in_c), for backward
  // Blocked forward (kBlocked, and a fused pointwise layer): the weights with rows padded to
  // kChannelBlock channels (pad_weight_rows).
  const float* w_blocked = nullptr;
  const float* bias = nullptr;
  const float* in = nullptr;  // forward input
  float* out = nullptr;       // forward output (count x out_size)
  const float* d_out = nullptr;
  const float* relu_out = nullptr;  // out when the layer has a ReLU, else nullptr
  float* d_in = nullptr;
  // Pre-masked gradients (plan_premasks): this layer's backward writes d_in[j] as 0 where
  // mask_d_in[j] <= 0 (the ReLU output of the layer below), and that layer's backward, which
  // reads each gradient value once per tap, then skips its own mask (d_out_masked).
  const float* mask_d_in = nullptr;
  bool d_out_masked = false;
  // The target's first item in this layer's phases, numbered separately per Form.
  std::int64_t forward_first[kForms] = {}, backward_first[kForms] = {};
};

struct Plan {
  int targets = 0, layers = 0;
  const PlanLayer* table = nullptr;  // [layer * targets + target]: one phase's targets adjacent
  // Items per layer and form, over all targets.
  std::int64_t forward_items[kMaxLayers][kForms] = {}, backward_items[kMaxLayers][kForms] = {};
  ImageState images;
  double* row_sums = nullptr;  // n x h: sums of g^2 per image row
  // The last layer has no ReLU in any target, so d objective / d (its input) is the constant
  // seed x weights: computed by initial_evaluation into a buffer of its own (the last layer's
  // d_in, the next-to-last layer's d_out), never again.
  bool constant_top = false;
  // Separable layers (depthwise l without ReLU, pointwise l + 1 below the top) in one phase
  // instead of two, the same for every target: forward where the pointwise op has few inputs
  // (the depthwise values are computed inside its items), backward where it has few outputs
  // (its backward values are computed inside the depthwise op's items). Compact models' layers
  // 3 and 4 (3 filters) fuse both ways, layer 2 backward.
  bool fuse_forward[kMaxLayers] = {}, fuse_backward[kMaxLayers] = {};
  StepSettings step;
  BlurTaps image_blur;
};

// Numbers every phase's items, target after target, from the layers' shapes and counts:
// fills the table's first items and the plan's totals (table as in Plan, layers x targets).
inline void number_items(PlanLayer* table, Plan& plan) {
  for (int l = 0; l < plan.layers; ++l) {
    std::int64_t forward_next[kForms] = {}, backward_next[kForms] = {};
    for (int t = 0; t < plan.targets; ++t) {
      PlanLayer& e = table[std::int64_t{l} * plan.targets + t];
      for (int form = 0; form < kForms; ++form) {
        e.forward_first[form] = forward_next[form];
        e.backward_first[form] = backward_next[form];
      }
      const int f = forward_form(e.p), b = backward_form(e.p);
      forward_next[f] += std::int64_t{e.count} * forward_items(e.p, f);
      backward_next[b] += std::int64_t{e.count} * backward_items(e.p, b);
    }
    for (int form = 0; form < kForms; ++form) {
      plan.forward_items[l][form] = forward_next[form];
      plan.backward_items[l][form] = backward_next[form];
    }
  }
}

// A pointwise layer's weights (in_c, out_c) transposed to (out_c, in_c) (PlanLayer::w_t).
inline void transpose_pointwise(const LayerParams& p, const float* w, float* w_t) {
  for (int ci = 0; ci < p.in_c; ++ci) {
    for (int co = 0; co < p.out_c; ++co) {
      w_t[std::int64_t{co} * p.in_c + ci] = w[std::int64_t{ci} * p.out_c + co];
    }
  }
}

// A dense layer's weights (taps x in_c rows of out_c) with each row padded with zeros to a
// multiple of kChannelBlock channels (PlanLayer::w_blocked); `w_padded` holds
// padded_weight_count(p) floats.
inline std::int64_t padded_weight_count(const LayerParams& p) {
  return std::int64_t{p.k_h} * p.k_w * p.in_c *
         element_ops::padded_channels(p.out_c, kChannelBlock);
}
inline void pad_weight_rows(const LayerParams& p, const float* w, float* w_padded) {
  const int stride = element_ops::padded_channels(p.out_c, kChannelBlock);
  const std::int64_t rows = std::int64_t{p.k_h} * p.k_w * p.in_c;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int co = 0; co < stride; ++co) {
      w_padded[r * stride + co] = co < p.out_c ? w[r * p.out_c + co] : 0.0f;
    }
  }
}
// Whether a layer's items read PlanLayer::w_blocked: a blocked forward, which a fused pointwise
// layer also is (plan_fusions).
STIMLOOP_HOST_DEVICE inline bool needs_padded_weights(const LayerParams& p) {
  return forward_form(p) == kBlocked;
}

// The plan's own copies of one layer's weights, in the layouts its items read (PlanLayer::w_t,
// w_blocked; empty where the layer needs none), for both plan builders to upload or point at.
struct LayerWeightCopies {
  std::vector<float> transposed, padded;
};
inline LayerWeightCopies layer_weight_copies(const LayerParams& p, const float* w) {
  LayerWeightCopies copies;
  if (p.kind == LayerKind::kPointwise) {
    copies.transposed.resize(std::size_t(p.in_c) * p.out_c);
    transpose_pointwise(p, w, copies.transposed.data());
  }
  if (needs_padded_weights(p)) {
    copies.padded.resize(std::size_t(padded_weight_count(p)));
    pad_weight_rows(p, w, copies.padded.data());
  }
  return copies;
}

// Decides Plan::fuse_forward / fuse_backward from every target's shapes.
inline void plan_fusions(const PlanLayer* table, Plan& plan) {
  for (int l = 0; l + 2 < plan.layers; ++l) {
    bool forward = true, backward = true;
    for (int t = 0; t < plan.targets; ++t) {
      const LayerParams& dw = table[std::int64_t{l} * plan.targets + t].p;
      const LayerParams& pw = table[std::int64_t{l + 1} * plan.targets + t].p;
      const bool pair = dw.kind == LayerKind::kDepthwise && pw.kind == LayerKind::kPointwise &&
                        !dw.relu && pw.in_c == dw.out_c;
      // Every block of the pointwise layer's outputs recomputes the depthwise values: at most two.
      forward = forward && pair && pw.in_c <= kFuseChannels && forward_form(pw) == kBlocked &&
                pw.out_c <= 2 * kChannelBlock;
      const int dw_form = backward_form(dw);
      backward =
          backward && pair && pw.out_c <= kFuseChannels && (dw_form == kPlain || dw_form == kQuad);
    }
    plan.fuse_forward[l] = forward;
    plan.fuse_backward[l] = backward;
  }
}

// One target's backward buffers: two for alternating layers (each count x the widest layer), the
// image gradient, the seed (d objective / d outputs) and, with Plan::constant_top, the buffer
// that keeps the top gradient.
struct TargetGradients {
  float* a = nullptr;
  float* b = nullptr;
  float* image = nullptr;
  const float* seed = nullptr;
  float* top = nullptr;
};

// Sets every layer's d_out / d_in once the fusions and constant_top are decided: each backward
// phase reads what the previous one wrote and writes the other alternating buffer (a fused
// depthwise layer reads its pointwise layer's d_out, so it must not write there).
inline void assign_backward_buffers(PlanLayer* table, const Plan& plan,
                                    const TargetGradients* gradients) {
  const int top = plan.layers - 1;
  for (int t = 0; t < plan.targets; ++t) {
    const TargetGradients& g = gradients[t];
    const float* source = g.seed;
    for (int l = top; l >= 0; --l) {
      PlanLayer& e = table[std::int64_t{l} * plan.targets + t];
      e.d_out = source;
      if (l > 0 && plan.fuse_backward[l - 1]) {  // its backward runs inside layer l - 1's items
        e.d_in = nullptr;
        continue;
      }
      if (l == 0) {
        e.d_in = g.image;
      } else if (l == top && plan.constant_top) {
        e.d_in = g.top;
      } else {
        e.d_in = source == g.a ? g.b : g.a;
      }
      source = e.d_in;
    }
  }
}

// Sets the pre-masked gradients (PlanLayer::mask_d_in / d_out_masked) once the fusions, the
// constant top and the backward buffers are decided: for a layer whose backward runs blocked
// (layer 0: each value of its d_out is read by 25 taps, with a ReLU-mask load each time), where
// the layer above writes that d_out on every step (not the constant top gradient, written once
// while the mask changes with every forward pass).
inline void plan_premasks(PlanLayer* table, const Plan& plan) {
  const int top = plan.layers - 1;
  for (int l = 0; l < top; ++l) {
    if (l + 1 == top && plan.constant_top) continue;
    for (int t = 0; t < plan.targets; ++t) {
      PlanLayer& below = table[std::int64_t{l} * plan.targets + t];
      PlanLayer& above = table[std::int64_t{l + 1} * plan.targets + t];
      if (backward_form(below.p) != kBlocked || below.relu_out == nullptr) continue;
      // A fused layer's values are computed, not stored (never above a blocked conv: only
      // depthwise layers take a fused pointwise backward); kept as a guard.
      if (above.d_in == nullptr) continue;
      above.mask_d_in = below.relu_out;
      below.d_out_masked = true;
    }
  }
}

// Stores input gradient j of layer t (target-local), masked where the plan pre-masks it.
STIMLOOP_HOST_DEVICE inline void store_d_in(const PlanLayer& t, std::int64_t j, float v) {
  t.d_in[j] = element_ops::relu_passes(t.mask_d_in, j) ? v : 0.0f;
}
// The ReLU output that masks layer t's backward terms: none where its d_out came pre-masked.
STIMLOOP_HOST_DEVICE inline const float* backward_mask(const PlanLayer& t) {
  return t.d_out_masked ? nullptr : t.relu_out;
}

// Whether every target's last layer is without a ReLU (Plan::constant_top may be set, with the
// buffer it needs).
inline bool top_gradient_is_constant(const PlanLayer* table, const Plan& plan) {
  if (plan.layers < 2) return false;
  for (int t = 0; t < plan.targets; ++t) {
    if (table[std::int64_t{plan.layers - 1} * plan.targets + t].p.relu) return false;
  }
  return true;
}

// The target whose items [first, first + items) hold item i of a phase: the last target whose
// first item is <= i (targets without items in this form share their successor's first).
// `hint` is the worker's last answer: a worker's items rise through a phase (grid-stride), so
// the hinted target or one of the next few usually holds i, and the binary search over all
// targets (8 dependent loads for 219 models) is the fallback.
template <bool kForward>
STIMLOOP_HOST_DEVICE inline const PlanLayer& find_target(const Plan& plan, int l, int form,
                                                         std::int64_t i, int& hint) {
  const PlanLayer* row = plan.table + std::int64_t{l} * plan.targets;
  auto first = [row, form](int t) {
    return kForward ? row[t].forward_first[form] : row[t].backward_first[form];
  };
  int t = hint;
  if (t < plan.targets && first(t) <= i) {
    for (int step = 0; step < 4; ++step) {
      if (t + 1 == plan.targets || first(t + 1) > i) {
        hint = t;
        return row[t];
      }
      ++t;
    }
  }
  int lo = 0, hi = plan.targets - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first(mid) <= i) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  hint = lo;
  return row[lo];
}

// Layer l of the target whose layer `t` is (table rows are layers, columns targets).
STIMLOOP_HOST_DEVICE inline const PlanLayer& layer_of(const Plan& plan, const PlanLayer& t, int l) {
  const std::int64_t target = (&t - plan.table) % plan.targets;
  return plan.table[std::int64_t{l} * plan.targets + target];
}

// Forward value j of layer t (target-local); on the last layer, the best-so-far record.
STIMLOOP_HOST_DEVICE inline void finish_forward_value(const Plan& plan, const PlanLayer& t,
                                                      bool last, bool record, std::int64_t j,
                                                      float sum) {
  const float v = element_ops::activate(t.p, sum);
  t.out[j] = v;
  if (!last || !record) return;
  const std::int64_t per_image = t.p.out_size();
  const int image = t.first_image + static_cast<int>(j / per_image);
  if (j % per_image == plan.images.slots[image].output) record_response(plan.images, image, v);
}

#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
// The loops of layer l's forward (no sync: the caller ends the phase). Closures take the plan by
// reference and every local by value, so a deferring executor may run them after this returns.
template <class Exec>
STIMLOOP_HOST_DEVICE void forward_loops(Exec& ex, const Plan& plan, int l, bool record) {
  const bool last = l == plan.layers - 1;
  ex.for_each(
      plan.forward_items[l][kPlain], [&plan, l, last, record, hint = 0](std::int64_t i) mutable {
        const PlanLayer& t = find_target<true>(plan, l, kPlain, i, hint);
        const std::int64_t j = i - t.forward_first[kPlain];
        const float sum =
            element_ops::forward_sum(t.p, t.in, t.w, j, element_ops::bias_of(t.p, t.bias, j));
        finish_forward_value(plan, t, last, record, j, sum);
      });
  ex.warp_reduce(
      plan.forward_items[l][kSplit],
      [&plan, l, hint = 0](std::int64_t i, int lane, int lanes) mutable {
        const PlanLayer& t = find_target<true>(plan, l, kSplit, i, hint);
        return element_ops::forward_sum(t.p, t.in, t.w, i - t.forward_first[kSplit], 0.0f, lane,
                                        lanes);
      },
      [&plan, l, last, record, hint = 0](std::int64_t i, int lane, float total) mutable {
        if (lane != 0) return;
        const PlanLayer& t = find_target<true>(plan, l, kSplit, i, hint);
        const std::int64_t j = i - t.forward_first[kSplit];
        finish_forward_value(plan, t, last, record, j,
                             total + element_ops::bias_of(t.p, t.bias, j));
      });
  ex.for_each(plan.forward_items[l][kBlocked],
              [&plan, l, last, record, hint = 0](std::int64_t i) mutable {
                const PlanLayer& t = find_target<true>(plan, l, kBlocked, i, hint);
                const std::int64_t j = i - t.forward_first[kBlocked];
                const int blocks = (t.p.out_c + kChannelBlock - 1) / kChannelBlock;
                const std::int64_t pixel = j / blocks;
                const int co0 = static_cast<int>(j % blocks) * kChannelBlock;
                float acc[kChannelBlock];
                for (int c = 0; c < kChannelBlock; ++c) {
                  acc[c] = co0 + c < t.p.out_c && t.bias != nullptr ? t.bias[co0 + c] : 0.0f;
                }
                if (l > 0 && plan.fuse_forward[l - 1]) {
                  const PlanLayer& dw = layer_of(plan, t, l - 1);
                  element_ops::separable_forward_block<kChannelBlock, kFuseChannels>(
                      dw.p, dw.in, dw.w, dw.bias, t.p, t.w_blocked, pixel, co0, acc);
                } else {
                  element_ops::forward_block(t.p, t.in, t.w_blocked, pixel, co0, acc);
                }
                for (int c = 0; c < kChannelBlock && co0 + c < t.p.out_c; ++c) {
                  finish_forward_value(plan, t, last, record, pixel * t.p.out_c + co0 + c, acc[c]);
                }
              });
}

// One lane's part of input gradient j of layer t (target-local): the transposed weights where
// the layer has them.
STIMLOOP_HOST_DEVICE inline float backward_value(const PlanLayer& t, std::int64_t j, int lane,
                                                 int lanes) {
  if (t.w_t != nullptr) {
    return element_ops::pointwise_backward_transposed(t.p, t.d_out, backward_mask(t), t.w_t, j,
                                                      lane, lanes);
  }
  return element_ops::backward_sum(t.p, t.d_out, backward_mask(t), t.w, j, lane, lanes);
}

// The loops of layer l's backward (no sync), closures as forward_loops'.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE void backward_loops(Exec& ex, const Plan& plan, int l) {
  ex.for_each(plan.backward_items[l][kPlain], [&plan, l, hint = 0](std::int64_t i) mutable {
    const PlanLayer& t = find_target<false>(plan, l, kPlain, i, hint);
    const std::int64_t j = i - t.backward_first[kPlain];
    if (plan.fuse_backward[l]) {
      const PlanLayer& pw = layer_of(plan, t, l + 1);
      store_d_in(
          t, j,
          element_ops::separable_backward(t.p, t.w, pw.p, pw.d_out, backward_mask(pw), pw.w, j));
    } else {
      store_d_in(t, j, backward_value(t, j, 0, 1));
    }
  });
  ex.for_each(plan.backward_items[l][kQuad], [&plan, l, hint = 0](std::int64_t i) mutable {
    const PlanLayer& t = find_target<false>(plan, l, kQuad, i, hint);
    const LayerParams& p = t.p;
    // (image, block row, block column, channel), as NhwcPos over the blocks
    const element_ops::NhwcPos at = element_ops::unravel(
        i - t.backward_first[kQuad], (p.in_h + 1) / 2, (p.in_w + 1) / 2, p.in_c);
    const int c = at.c, bx = at.x, by = at.y;
    const std::int64_t b = at.b;
    float acc[4];
    if (plan.fuse_backward[l]) {
      const PlanLayer& pw = layer_of(plan, t, l + 1);
      element_ops::separable_backward_block2(p, t.w, pw.p, pw.d_out, backward_mask(pw), pw.w, b, by,
                                             bx, c, acc);
    } else {
      element_ops::depthwise_backward_block2(p, t.d_out, backward_mask(t), t.w, b, by, bx, c, acc);
    }
    for (int q = 0; q < 4; ++q) {
      const int iy = 2 * by + q / 2, ix = 2 * bx + q % 2;
      if (iy >= p.in_h || ix >= p.in_w) continue;
      const std::int64_t j = ((b * p.in_h + iy) * p.in_w + ix) * p.in_c + c;
      store_d_in(t, j, acc[q]);
    }
  });
  ex.warp_reduce(
      plan.backward_items[l][kSplit],
      [&plan, l, hint = 0](std::int64_t i, int lane, int lanes) mutable {
        const PlanLayer& t = find_target<false>(plan, l, kSplit, i, hint);
        return backward_value(t, i - t.backward_first[kSplit], lane, lanes);
      },
      [&plan, l, hint = 0](std::int64_t i, int lane, float total) mutable {
        if (lane != 0) return;
        const PlanLayer& t = find_target<false>(plan, l, kSplit, i, hint);
        store_d_in(t, i - t.backward_first[kSplit], total);
      });
  ex.warp_reduce(
      plan.backward_items[l][kBlocked],
      [&plan, l, hint = 0](std::int64_t i, int lane, int lanes) mutable {
        const PlanLayer& t = find_target<false>(plan, l, kBlocked, i, hint);
        Sums<kPixelChannels> sums = {};
        element_ops::backward_pixel(t.p, t.d_out, backward_mask(t), t.w,
                                    i - t.backward_first[kBlocked], lane, lanes, sums.v);
        return sums;
      },
      [&plan, l, hint = 0](std::int64_t i, int lane, const Sums<kPixelChannels>& total) mutable {
        const PlanLayer& t = find_target<false>(plan, l, kBlocked, i, hint);
        // Lane c writes channel c: one store each, not one lane's serial stores.
        if (lane < t.p.in_c) {
          store_d_in(t, (i - t.backward_first[kBlocked]) * t.p.in_c + lane, total.v[lane]);
        }
      });
}

// Forward, a phase a layer but for depthwise layers fused into the next one. With `open_end`
// the last phase is left without its sync(): the caller adds loops that may share it.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE void forward(Exec& ex, const Plan& plan, bool record, bool open_end = false) {
  for (int l = 0; l < plan.layers; ++l) {
    if (plan.fuse_forward[l]) continue;  // computed inside layer l + 1's items
    label_phase(
        ex, l > 0 && plan.fuse_forward[l - 1] ? "forward (+ the depthwise below)" : "forward", l);
    forward_loops(ex, plan, l, record);
    if (!(open_end && l == plan.layers - 1)) ex.sync();
  }
}

// Backward from layer `top` down to the image, a phase a layer but for pointwise layers whose
// backward is fused into the depthwise layer below.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE void backward(Exec& ex, const Plan& plan, int top) {
  for (int l = top; l >= 0; --l) {
    if (l > 0 && plan.fuse_backward[l - 1]) continue;  // computed inside layer l - 1's items
    label_phase(ex, plan.fuse_backward[l] ? "backward (+ the pointwise above)" : "backward", l);
    backward_loops(ex, plan, l);
    ex.sync();
  }
}

// The first evaluation (before any step): forward without a record, backward from the top,
// which also writes the constant top gradient (Plan::constant_top).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE STIMLOOP_FORCE_INLINE void initial_evaluation(Exec& ex, const Plan& plan) {
  forward(ex, plan, false);
  backward(ex, plan, plan.layers - 1);
}

// A step's evaluation: forward, then backward to the image. With a constant top gradient the
// last layer's backward is skipped, and the first backward phase (which reads only that gradient
// and forward outputs below the top) shares a phase with the last layer's forward.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE void evaluate(Exec& ex, const Plan& plan, bool record) {
  const int top = plan.layers - 1;
  if (!plan.constant_top) {
    forward(ex, plan, record);
    backward(ex, plan, top);
    return;
  }
  forward(ex, plan, record, /*open_end=*/true);
  backward(ex, plan, top - 1);
}

// Blur along y of value(image, element) at element e of an h x w x 3 image.
template <class Value>
STIMLOOP_HOST_DEVICE inline double blur_y(const ImageState& s, const BlurTaps& k, int image, int e,
                                          Value value) {
  const int c = e % 3, x = (e / 3) % s.w, y = e / (3 * s.w);
  double acc = 0.0;
  for (int t = -k.radius; t <= k.radius; ++t) {
    acc += k.w[t + k.radius] * value(image, (reflect_index(y + t, s.h) * s.w + x) * 3 + c);
  }
  return acc;
}
// Blur along x of channel c at (y, x) of one image's values `in`.
STIMLOOP_HOST_DEVICE inline double blur_x(const ImageState& s, const BlurTaps& k, const double* in,
                                          int y, int x, int c) {
  double acc = 0.0;
  for (int t = -k.radius; t <= k.radius; ++t) {
    acc += k.w[t + k.radius] * in[(y * s.w + reflect_index(x + t, s.w)) * 3 + c];
  }
  return acc;
}

// Where the last evaluation improved on an image's best, element e of x goes into best (before
// x changes; the flag is cleared by the phase that changes x).
STIMLOOP_HOST_DEVICE inline void copy_if_improved(const ImageState& s, int image, int e,
                                                  std::int64_t size) {
  if (s.improved[image] != 0) s.best[image * size + e] = s.x[image * size + e];
}

// x += step * blur(g / (rms(g) + 1e-5)), clipped, optionally grayed; writes the network input.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE void update(Exec& ex, const Plan& plan) {
  const ImageState& s = plan.images;
  const StepSettings& st = plan.step;
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  const int row = s.w * 3;
  label_phase(ex, "update: y-blur of the gradient, row sums of g^2");
  ex.for_each(s.n * size, [&](std::int64_t i) {
    const int image = static_cast<int>(i / size), e = static_cast<int>(i % size);
    copy_if_improved(s, image, e, size);
    s.scratch[i] = blur_y(s, st.gradient_blur, image, e,
                          [&](int im, int f) { return double(s.slots[im].gradient[f]); });
  });
  ex.warp_reduce(
      std::int64_t{s.n} * s.h,
      [&](std::int64_t r, int lane, int lanes) {
        const float* g = s.slots[r / s.h].gradient + (r % s.h) * row;
        double sum = 0.0;
        for (int k = lane; k < row; k += lanes) sum += double(g[k]) * double(g[k]);
        return sum;
      },
      [&](std::int64_t r, int lane, double total) {
        if (lane == 0) plan.row_sums[r] = total;
      });
  ex.sync();
  label_phase(ex, "update: rms, x-blur, step, clip");
  ex.warp_reduce(
      std::int64_t{s.n} * s.h,
      [&](std::int64_t r, int lane, int lanes) {
        const double* sums = plan.row_sums + (r / s.h) * s.h;
        double sum = 0.0;
        for (int k = lane; k < s.h; k += lanes) sum += sums[k];
        return sum;
      },
      [&](std::int64_t r, int lane, double sum_sq) {
        const int image = static_cast<int>(r / s.h), y = static_cast<int>(r % s.h);
        const double scale = 1.0 / (sqrt(sum_sq / double(size)) + 1e-5);
        const double* tmp = s.scratch + image * size;
        double* x = s.x + image * size;
        float* input = s.slots[image].input;
        for (int px = lane; px < s.w; px += kLanes) {
          double v[3];
          const int p = (y * s.w + px) * 3;
          for (int c = 0; c < 3; ++c) {
            const double g = scale * blur_x(s, st.gradient_blur, tmp, y, px, c);
            const double mean = st.means[c];
            v[c] = fmin(fmax(x[p + c] + st.step_size * g, -mean), 255.0 - mean);
          }
          if (st.grayscale) {
            const double gray = (v[0] + double(st.means[0]) + v[1] + double(st.means[1]) + v[2] +
                                 double(st.means[2])) /
                                3.0;
            for (int c = 0; c < 3; ++c) v[c] = gray - double(st.means[c]);
          }
          for (int c = 0; c < 3; ++c) {
            x[p + c] = v[c];
            input[p + c] = static_cast<float>(v[c]);
          }
        }
        if (y == 0 && lane == 0) s.improved[image] = 0;  // the last phase copied every element
      });
  ex.sync();
}

// The authors' periodic blur of the image itself (after the step's evaluation).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE void blur_images(Exec& ex, const Plan& plan) {
  const ImageState& s = plan.images;
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  label_phase(ex, "image blur: y");
  ex.for_each(s.n * size, [&](std::int64_t i) {
    const int image = static_cast<int>(i / size), e = static_cast<int>(i % size);
    copy_if_improved(s, image, e, size);
    s.scratch[i] =
        blur_y(s, plan.image_blur, image, e, [&](int im, int f) { return s.x[im * size + f]; });
  });
  ex.sync();
  label_phase(ex, "image blur: x");
  ex.for_each(s.n * size, [&](std::int64_t i) {
    const int image = static_cast<int>(i / size), e = static_cast<int>(i % size);
    const int c = e % 3, px = (e / 3) % s.w, y = e / (3 * s.w);
    const double v = blur_x(s, plan.image_blur, s.scratch + image * size, y, px, c);
    s.x[i] = v;
    s.slots[image].input[e] = static_cast<float>(v);
    if (e == 0) s.improved[image] = 0;
  });
  ex.sync();
}

// One step; `blur` when the authors' image blur follows this step's evaluation.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Exec>
STIMLOOP_HOST_DEVICE STIMLOOP_FORCE_INLINE void step(Exec& ex, const Plan& plan, bool blur) {
  update(ex, plan);
  if (!blur) {
    evaluate(ex, plan, true);
    return;
  }
  // The gradient of the evaluated image would be replaced at once: record, blur, evaluate.
  forward(ex, plan, true);
  blur_images(ex, plan);
  evaluate(ex, plan, false);
}

// The authors' image blur follows the evaluation of steps t > 0 with t % every == 0.
STIMLOOP_HOST_DEVICE inline bool is_blur_step(int t, int every) {
  return every > 0 && t > 0 && t % every == 0;
}

// Runs nothing: counts a program's phases (barriers) and items, to say what a step costs.
struct PhaseCounter {
  int syncs = 0;
  std::int64_t items = 0, warp_items = 0;
  template <class F>
  void for_each(std::int64_t n, F&&) {
    items += n;
  }
  template <class Partial, class Consume>
  void warp_reduce(std::int64_t n, Partial&&, Consume&&) {
    warp_items += n;
  }
  void sync() { ++syncs; }
};

// Runs nothing: records each phase's labels and items, in order, to name the phases of a
// step's timing on the GPU (device_synthesis.cu's profile).
struct PhaseLog {
  struct Phase {
    std::string what;
    std::int64_t items = 0, warp_items = 0;
  };
  std::vector<Phase> phases{1};  // the last one is open
  void label(const char* what, int layer) {
    std::string& w = phases.back().what;
    if (!w.empty()) w += " + ";
    w += what;
    if (layer >= 0) w += " L" + std::to_string(layer);
  }
  template <class F>
  void for_each(std::int64_t n, F&&) {
    phases.back().items += n;
  }
  template <class Partial, class Consume>
  void warp_reduce(std::int64_t n, Partial&&, Consume&&) {
    phases.back().warp_items += n;
  }
  void sync() { phases.emplace_back(); }
};

// The executor of the CPU run: every item in order, one lane after another.
struct SerialExecutor {
  template <class F>
  void for_each(std::int64_t n, F&& f) {
    for (std::int64_t i = 0; i < n; ++i) f(i);
  }
  template <class Partial, class Consume>
  void warp_reduce(std::int64_t n, Partial&& partial, Consume&& consume) {
    for (std::int64_t i = 0; i < n; ++i) {
      auto total = partial(i, 0, kLanes);
      for (int lane = 1; lane < kLanes; ++lane) total += partial(i, lane, kLanes);
      for (int lane = 0; lane < kLanes; ++lane) consume(i, lane, total);
    }
  }
  void sync() {}
};

}  // namespace stimloop::persistent
