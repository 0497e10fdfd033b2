#include "server/sessions/block_maker.h"

#include <future>
#include <map>
#include <mutex>

#include "server/engine/synthesize_job.h"
#include "server/sessions/selection.h"

namespace stimloop::sessions {
namespace {

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

// The time at which the block's syntheses must stop. They step round-robin on one engine: each
// job's own check keeps only its next step inside its deadline, so after the last check up to one
// more step runs, then every job's final evaluation and encoding, one after another. Those come
// off the deadline too, as does the caller's reserve.
double step_seconds(const BlockContext& ctx) {
  return ctx.step_times ? ctx.step_times->lookup(ctx.session_model, 1).value_or(0.0) : 0.0;
}

std::optional<engine::Clock::time_point> synthesis_cut(const BlockContext& ctx, int count) {
  std::optional<engine::Clock::time_point> cut = ctx.request.deadline;
  if (cut) {
    const double step_s = step_seconds(ctx);
    const double finals_s = count * (0.5 * step_s + 0.002);
    *cut -= ctx.reserve + std::chrono::duration_cast<engine::Clock::duration>(
                              std::chrono::duration<double>(step_s + finals_s));
  }
  return cut;
}

// Runs every synthesis of the share at once (the engine interleaves them step by step), or takes
// the batch prepared for exactly this plan, and waits for all of them.
Status synthesize(BlockContext& ctx, int count, int first_position, std::uint64_t seed,
                  std::vector<BlockItem>& items) {
  if (ctx.session_model.empty()) {
    return failed_precondition(
        "strategy: SYNTHESIZE needs a calibrated channel, and none is yet (the first fit comes "
        "once calibration.min_stimuli stimuli have valid trials): ask for POOL blocks first");
  }
  ASSIGN_OR_RETURN(auto plan, plan_syntheses(ctx.request, ctx.block_index, first_position, count,
                                             seed, static_cast<int>(ctx.channel_ids.size())));
  const auto cut = synthesis_cut(ctx, count);
  std::unique_ptr<SynthesisBatch> batch = ctx.take_prepared ? ctx.take_prepared(plan) : nullptr;
  std::vector<BlockItem> made;
  if (batch) {
    // Prepared jobs have no deadline of their own, so they are cancelled at the cut instead: as
    // early as a job with that deadline would stop itself (StepTimer::out_of_time's room for one
    // more step, its final evaluation and delivery).
    auto stop = cut;
    if (stop) {
      *stop -= std::chrono::duration_cast<engine::Clock::duration>(std::chrono::duration<double>(
          1.7 * step_seconds(ctx) + synthesis::StepTimer::kDeliveryAllowanceS));
    }
    ASSIGN_OR_RETURN(made, batch->collect(stop, /*prepared=*/true));
  } else {
    ASSIGN_OR_RETURN(auto model, ctx.registry.find(ctx.session_model));
    ASSIGN_OR_RETURN(
        batch, SynthesisBatch::start(
                   std::move(plan),
                   BatchTarget{model, ctx.session_model, ctx.fit_version, ctx.channel_ids},
                   ctx.request.priority, cut, ctx.engine, ctx.registry.backend(), ctx.step_times,
                   "session:" + ctx.request.session_id + ":synthesize"));
    ASSIGN_OR_RETURN(made, batch->collect(std::nullopt, /*prepared=*/false));
  }
  for (auto& item : made) items.push_back(std::move(item));
  return Status::Ok();
}

}  // namespace

std::uint64_t derived_block_seed(const std::string& session_id, int block_index) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a: stable everywhere, unlike std::hash
  for (unsigned char c : session_id) h = (h ^ c) * 1099511628211ull;
  return h ^ (static_cast<std::uint64_t>(block_index) * 0x9e3779b97f4a7c15ull);
}

std::vector<std::pair<int, int>> synthesis_shares(const BlockRequest& r) {
  std::vector<std::pair<int, int>> out;
  int position = static_cast<int>(r.references.size());
  for (const auto& share : r.shares) {
    if (share.kind == StrategyKind::kSynthesize && share.count > 0) {
      out.emplace_back(position, share.count);
    }
    position += share.count;
  }
  return out;
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
