// The strategies of NextBlock: which stimuli make up a block. References (named pool images)
// come first, then each share of the strategy mix in order: POOL draws unshown pool images at
// random (seeded), ADEPT picks unshown pool images by Adept's objective on the calibrated
// predictions (selection.h), COMMITTEE the unshown pool images on which readouts fitted to random
// subsets of the session disagree most, SYNTHESIZE runs one synthesis per stimulus on the
// calibrated channels' models (round-robin over channels) as ordinary engine jobs at the request's
// priority, stopping in time for the rest of the block's work when a deadline is given, unless
// the same syntheses were prepared ahead (synthesis_batch.h): then it collects those.
#pragma once

#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "server/engine/engine.h"
#include "server/engine/model_registry.h"
#include "server/engine/synthesize_job.h"
#include "server/sessions/block_item.h"
#include "server/sessions/image_pool.h"
#include "server/sessions/session_manager.h"
#include "server/sessions/synthesis_batch.h"

namespace stimloop::sessions {

struct BlockContext {
  const ImagePool& pool;
  const std::set<std::string>& shown_pool;
  const BlockRequest& request;
  int block_index = 0;
  engine::ModelRegistry& registry;
  engine::Engine& engine;
  // The session's model (one output per channel) once calibrated, else empty; channel ids in
  // output order.
  std::string session_model{};
  int fit_version = 0;  // of the session model
  std::vector<std::string> channel_ids{};
  // ADEPT: every pool image's predicted response per channel (pool size x channels), and the
  // predictions for the stimuli shown so far (m x channels); errors say why they are not ready.
  std::function<StatusOr<std::vector<float>>()> pool_predictions{};
  std::function<std::vector<float>()> shown_predictions{};
  // COMMITTEE: members x pool size x channels predictions, and the number of members.
  std::function<StatusOr<std::vector<float>>(int members)> committee_predictions{};
  // Step times of the session models, shared with every synthesis job of the block (so even a
  // block's first step is not taken blind).
  std::shared_ptr<engine::StepTimeBook> step_times{};
  // A batch prepared ahead for exactly this plan, handed over (else null: run it now).
  std::function<std::unique_ptr<SynthesisBatch>(const SynthesisPlan&)> take_prepared{};
  // Time the caller needs after the items are made (features, store): synthesis stops earlier.
  std::chrono::milliseconds reserve{0};
  std::string strategy_json{};  // filled by make_block_items: what was asked, for the store
};

// The SYNTHESIZE shares of a request: (first position in the block, count) each, in order.
std::vector<std::pair<int, int>> synthesis_shares(const BlockRequest& request);

StatusOr<std::vector<BlockItem>> make_block_items(BlockContext& ctx);

// The block's seed when the request gives none: stable across machines and restarts.
std::uint64_t derived_block_seed(const std::string& session_id, int block_index);

}  // namespace stimloop::sessions
