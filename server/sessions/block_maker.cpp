#include "server/sessions/block_maker.h"

#include <future>
#include <map>
#include <mutex>

#include "server/engine/synthesize_job.h"
#include "server/sessions/selection.h"

namespace stimloop::sessions {
namespace {

// Collects one synthesis job's stimulus; never blocks the engine thread.
class CollectingSink : public engine::SynthesisSink {
 public:
  void on_progress(const synthesis::ProgressEvent&) override {}
  void on_snapshot(const synthesis::ProgressEvent&,
                   std::vector<std::vector<std::uint8_t>>) override {}
  void on_stimulus(const engine::SynthesisOutput& output) override {
    std::lock_guard lock(mutex_);
    outputs_.push_back(output);
  }
  void on_done(const engine::SynthesisSummary& summary) override {
    stopped_early_ = summary.stop_reason != synthesis::StopReason::kCompleted;
    done_.set_value(Status::Ok());
  }
  void on_error(const Status& status) override { done_.set_value(status); }

  std::future<Status> done() { return done_.get_future(); }
  std::vector<engine::SynthesisOutput> outputs() {
    std::lock_guard lock(mutex_);
    return outputs_;
  }
  bool stopped_early() const { return stopped_early_; }

 private:
  std::mutex mutex_;
  std::vector<engine::SynthesisOutput> outputs_;
  std::promise<Status> done_;
  bool stopped_early_ = false;
};

StatusOr<BlockItem> pool_item(const ImagePool& pool, int index, const char* origin) {
  const PoolImage& img = pool.images[index];
  BlockItem item;
  item.origin = origin;
  item.pool_index = index;
  item.source_json = nlohmann::json{{"pool", pool.name}, {"pool_image", img.name}}.dump();
  item.pixels = img.image.pixels;
  ASSIGN_OR_RETURN(item.png, encode_png(img.image));
  return item;
}

// Committee members: enough for a variance, few enough that their pool predictions stay cheap.
constexpr int kCommitteeMembers = 8;

// Adds the chosen pool images to the block (and makes them ineligible for its later shares).
Status take_pool_images(const ImagePool& pool, const std::vector<int>& chosen, int wanted,
                        bool* eligible, std::vector<BlockItem>& items) {
  if (static_cast<int>(chosen.size()) < wanted) {
    return failed_precondition("strategy: pool '" + pool.name + "' has only " +
                               std::to_string(chosen.size()) + " images not yet shown; " +
                               std::to_string(wanted) + " asked for");
  }
  for (int index : chosen) {
    eligible[index] = false;
    ASSIGN_OR_RETURN(auto item, pool_item(pool, index, "pool"));
    items.push_back(std::move(item));
  }
  return Status::Ok();
}

StatusOr<synthesis::SynthesisRequest> synthesis_request(const BlockRequest& r, std::uint64_t seed) {
  synthesis::SynthesisRequest s;
  if (r.synthesis) {
    s = *r.synthesis;
  } else {
    s.objective = r.objective;
    s.method = r.method.value_or(synthesis::MethodKind::kCowley2026);
    const auto defaults = synthesis::method_defaults(s.method, s.norm, s.epsilon);
    s.steps = r.steps > 0 ? r.steps : defaults.steps;
    s.step_size = defaults.step_size;
  }
  if (s.objective != synthesis::ObjectiveKind::kMax &&
      s.objective != synthesis::ObjectiveKind::kMin) {
    return invalid_argument("strategy.objective: SYNTHESIZE blocks take MAX or MIN");
  }
  s.seed = seed;
  s.count = 1;
  if (Status st = synthesis::validate(s); !st.ok()) return st.with_context("strategy");
  return s;
}

// Runs every synthesis of the block at once (the engine interleaves them step by step) and
// waits for all of them.
Status synthesize(BlockContext& ctx, int count, int first_position, std::uint64_t seed,
                  std::vector<BlockItem>& items) {
  if (ctx.session_model.empty()) {
    return failed_precondition(
        "strategy: SYNTHESIZE needs a calibrated channel, and none is yet (the first fit comes "
        "once calibration.min_stimuli stimuli have valid trials): ask for POOL blocks first");
  }
  // The block's syntheses step round-robin on one engine: each job's own check keeps only its
  // next step inside its deadline, so after the last check up to one more step runs, then every
  // job's final evaluation and encoding, one after another. Those come off the deadline too.
  std::optional<engine::Clock::time_point> deadline = ctx.request.deadline;
  if (deadline) {
    const double step_s =
        ctx.step_times ? ctx.step_times->lookup(ctx.session_model, 1).value_or(0.0) : 0.0;
    const double finals_s = count * (0.5 * step_s + 0.002);
    *deadline -= ctx.reserve + std::chrono::duration_cast<engine::Clock::duration>(
                                   std::chrono::duration<double>(step_s + finals_s));
  }
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<std::future<Status>> done;
  std::vector<int> channels;
  ASSIGN_OR_RETURN(auto model, ctx.registry.find(ctx.session_model));
  engine::SynthesizeOptions options;
  options.step_times = ctx.step_times;
  for (int j = 0; j < count; ++j) {
    const int position = first_position + j;
    const int channel = (ctx.block_index + position) % static_cast<int>(ctx.channel_ids.size());
    ASSIGN_OR_RETURN(auto request, synthesis_request(ctx.request, seed + position));
    request.output_index = channel;
    if (deadline) {
      request.deadline_ms =
          std::chrono::duration<double, std::milli>(*deadline - engine::Clock::now()).count();
    }
    auto sink = std::make_shared<CollectingSink>();
    done.push_back(sink->done());
    auto job = std::make_shared<engine::SynthesizeJob>(
        "session:" + ctx.request.session_id + ":synthesize", ctx.request.priority, deadline, model,
        ctx.registry.backend(), std::move(request), engine::SynthesizeOptions{}, sink);
    if (Status st = ctx.engine.submit(job); !st.ok()) {
      // Jobs already submitted still end and fulfil their futures: wait, then report.
      done.pop_back();
      for (auto& f : done) f.wait();
      return st;
    }
    sinks.push_back(sink);
    channels.push_back(channel);
  }
  Status first_error;
  for (auto& f : done) {
    Status st = f.get();
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  RETURN_IF_ERROR(first_error);
  for (int j = 0; j < count; ++j) {
    auto outputs = sinks[j]->outputs();
    if (outputs.empty()) {
      return deadline_exceeded("the deadline left no time for a synthesis step (stimulus " +
                               std::to_string(first_position + j) + ")");
    }
    BlockItem item;
    item.origin = "synthesized";
    item.source_json = nlohmann::json{{"model_id", ctx.session_model},
                                      {"output_index", channels[j]},
                                      {"channel_id", ctx.channel_ids[channels[j]]},
                                      {"record", outputs.front().record}}
                           .dump();
    const auto& predicted = outputs.front().stimulus.outputs;
    item.predicted.assign(predicted.begin(), predicted.end());
    item.pixels = outputs.front().stimulus.pixels;
    item.png = outputs.front().png;
    item.stopped_early = sinks[j]->stopped_early();
    items.push_back(std::move(item));
  }
  return Status::Ok();
}

}  // namespace

std::uint64_t derived_block_seed(const std::string& session_id, int block_index) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a: stable everywhere, unlike std::hash
  for (unsigned char c : session_id) h = (h ^ c) * 1099511628211ull;
  return h ^ (static_cast<std::uint64_t>(block_index) * 0x9e3779b97f4a7c15ull);
}

StatusOr<std::vector<BlockItem>> make_block_items(BlockContext& ctx) {
  const BlockRequest& r = ctx.request;
  if (r.count < 1 || r.count > kMaxBlockStimuli) {
    return invalid_argument("count: " + std::to_string(r.count) + " is outside 1.." +
                            std::to_string(kMaxBlockStimuli));
  }
  if (static_cast<int>(r.references.size()) > r.count) {
    return invalid_argument("strategy.references: more references than the block's count");
  }
  std::vector<StrategyShare> shares = r.shares;
  const int rest = r.count - static_cast<int>(r.references.size());
  if (shares.empty() && rest > 0) shares.push_back({StrategyKind::kPool, rest});
  int total = 0;
  for (std::size_t i = 0; i < shares.size(); ++i) {
    if (shares[i].count < 0) {
      return invalid_argument("strategy.mix[" + std::to_string(i) + "].count is negative");
    }
    total += shares[i].count;
  }
  if (total != rest) {
    return invalid_argument("strategy.mix: counts add up to " + std::to_string(total) +
                            "; the block has " + std::to_string(rest) +
                            " stimuli besides its references");
  }
  const std::uint64_t seed =
      r.seed != 0 ? r.seed : derived_block_seed(r.session_id, ctx.block_index);

  std::map<std::string, int> index_of;
  for (std::size_t i = 0; i < ctx.pool.images.size(); ++i) index_of[ctx.pool.images[i].name] = i;
  // A plain bool array: std::vector<bool> packs bits and cannot be viewed as a span.
  const int pool_size = static_cast<int>(ctx.pool.images.size());
  std::unique_ptr<bool[]> eligible(new bool[pool_size]);
  std::fill_n(eligible.get(), pool_size, true);
  for (const auto& name : ctx.shown_pool) {
    if (auto it = index_of.find(name); it != index_of.end()) eligible[it->second] = false;
  }

  std::vector<BlockItem> items;
  nlohmann::json mix = nlohmann::json::array();
  for (std::size_t i = 0; i < r.references.size(); ++i) {
    auto it = index_of.find(r.references[i]);
    if (it == index_of.end()) {
      return invalid_argument("strategy.references[" + std::to_string(i) + "]: '" +
                              clip(r.references[i]) + "' is not an image of pool '" +
                              ctx.pool.name + "'");
    }
    eligible[it->second] = false;
    ASSIGN_OR_RETURN(auto item, pool_item(ctx.pool, it->second, "reference"));
    items.push_back(std::move(item));
  }
  for (std::size_t k = 0; k < shares.size(); ++k) {
    const StrategyShare& share = shares[k];
    mix.push_back({{"kind", to_string(share.kind)}, {"count", share.count}});
    if (share.kind == StrategyKind::kPool) {
      const auto chosen = select_random(pool_size, std::span<const bool>(eligible.get(), pool_size),
                                        share.count, seed + 7919 * (k + 1));
      RETURN_IF_ERROR(take_pool_images(ctx.pool, chosen, share.count, eligible.get(), items));
    } else if (share.kind == StrategyKind::kAdept) {
      if (ctx.session_model.empty() || !ctx.pool_predictions) {
        return failed_precondition(
            "strategy: ADEPT chooses by the calibrated predictions, and no channel is calibrated "
            "yet: ask for POOL blocks first");
      }
      ASSIGN_OR_RETURN(auto predicted, ctx.pool_predictions());
      const auto shown = ctx.shown_predictions();
      const int channels = static_cast<int>(ctx.channel_ids.size());
      const auto chosen =
          select_adept(predicted, pool_size, channels,
                       std::span<const bool>(eligible.get(), pool_size), shown, share.count);
      RETURN_IF_ERROR(take_pool_images(ctx.pool, chosen, share.count, eligible.get(), items));
    } else if (share.kind == StrategyKind::kCommittee) {
      if (ctx.session_model.empty() || !ctx.committee_predictions) {
        return failed_precondition(
            "strategy: COMMITTEE compares calibrated readouts, and no channel is calibrated yet: "
            "ask for POOL blocks first");
      }
      ASSIGN_OR_RETURN(auto predictions, ctx.committee_predictions(kCommitteeMembers));
      const auto chosen = select_committee(
          predictions, kCommitteeMembers, pool_size, static_cast<int>(ctx.channel_ids.size()),
          std::span<const bool>(eligible.get(), pool_size), share.count);
      RETURN_IF_ERROR(take_pool_images(ctx.pool, chosen, share.count, eligible.get(), items));
    } else {
      RETURN_IF_ERROR(synthesize(ctx, share.count, static_cast<int>(items.size()), seed, items));
    }
  }
  nlohmann::json strategy = {{"references", r.references},
                             {"mix", mix},
                             {"seed", seed},
                             {"objective", synthesis::to_string(r.objective)},
                             {"steps", r.steps}};
  if (r.synthesis) strategy["synthesis"] = synthesis::to_json(*r.synthesis);
  ctx.strategy_json = strategy.dump();
  return items;
}

}  // namespace stimloop::sessions
