// The pieces of stimloop-bench-session-insilico (bench_session_insilico.cpp): virtual neurons
// evaluated in this process (the ground truth the server never sees), and the Sessions calls of
// an in-silico closed-loop session: pool images handed out as references and their Poisson trials
// reported, SYNTHESIZE blocks scored against the true neurons, their trials reported back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client/lib/stimloop_client.h"
#include "common/status.h"

namespace stimloop::bench::insilico {

namespace v1 = ::stimloop::v1;

double median(std::vector<double> v);
// Linear interpolation between order statistics; p in [0, 100].
double percentile(std::vector<double> v, double p);
// A seeded Fisher-Yates shuffle of 0..n-1 from std::mt19937_64's raw output (the same with every
// standard library, unlike std::shuffle).
std::vector<int> seeded_order(int n, std::uint64_t seed);

// One virtual neuron: output `output` of model `model_id` (found in one of the model folders).
struct NeuronSpec {
  std::string model_id;
  int output = 0;
};

// The virtual neurons, as client/rig_sim/virtual_neurons.h defines them (rate = gain *
// max(0, output), a trial's count a Poisson draw from it), but with a gain per neuron (each is
// scaled to its own pool statistics) and evaluated in batches with one forward pass per distinct
// model: 33 outputs of the shared model cost one pass, not 33.
class TrueNeurons {
 public:
  static StatusOr<std::unique_ptr<TrueNeurons>> load(const std::vector<NeuronSpec>& specs,
                                                     const std::vector<std::string>& model_dirs);
  ~TrueNeurons();
  int size() const;
  const NeuronSpec& spec(int k) const;
  // Raw model outputs (no gain, no rectification), images x neurons, for n images of h x w x 3
  // bytes each, back to back.
  StatusOr<std::vector<double>> outputs(const std::vector<std::uint8_t>& pixels, int n, int height,
                                        int width);
  void set_gains(std::vector<double> gains) { gains_ = std::move(gains); }
  const std::vector<double>& gains() const { return gains_; }
  double rate(int k, double output) const;
  // Expected spike counts of every neuron for one image.
  StatusOr<std::vector<double>> rates(const std::vector<std::uint8_t>& pixels, int height,
                                      int width);

 private:
  TrueNeurons();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<double> gains_;
};

// The pool as this process sees it (decoded by the server's own pool loader, so the pixels are the
// ones the server hands out; checked on every block) and every neuron's true rate on every image.
struct PoolTruth {
  std::vector<std::string> names;  // pool order (image0001.jpg, ...)
  int height = 0, width = 0;
  std::vector<std::uint8_t> pixels;  // images x h x w x 3
  std::vector<double> rates;         // images x neurons
  int neurons = 0;
  std::vector<double> best;     // per neuron: the largest true rate over the whole pool
  std::vector<int> best_image;  // ... and its image index
  double rate(int image, int neuron) const {
    return rates[static_cast<std::size_t>(image) * neurons + neuron];
  }
};

// Opens a session of `channels` channels named ch0.. (free-text names given), calibrated on
// `base` with `form`, drawing from `pool`.
StatusOr<v1::SessionInfo> open_session(client::StimloopClient& client, const std::string& id,
                                       const std::vector<std::string>& channel_names,
                                       const std::string& base, const std::string& pool,
                                       v1::ReadoutForm form, const std::string& notes);

// One ReportResponses: the stimuli the fit has seen after it and what the server answered.
struct ReportStep {
  int stimuli = 0, version = 0, stored = 0;
  double median_cv_r = 0.0, next_block_s = 0.0, report_s = 0.0;
  std::vector<double> cv_r;  // per channel
};

// Hands out `images` (pool indices) as references, in blocks of at most 256, and reports
// `repeats` Poisson trials of every channel for each, one ReportResponses (one refit) per
// `report_every` images. `poisson_state` advances with every draw.
StatusOr<std::vector<ReportStep>> report_pool_images(client::StimloopClient& client,
                                                     const std::string& session_id,
                                                     const std::vector<int>& images,
                                                     int report_every, const PoolTruth& truth,
                                                     int repeats, std::uint64_t& poisson_state);

// A synthesized stimulus as the rig saw it: what the server says about it and what the true
// neuron of its target channel did.
struct SynthStimulus {
  std::string stimulus_id, target_channel;
  int channel = -1;              // index of target_channel
  double true_rate = 0.0;        // the target neuron's noise-free rate
  double ratio = 0.0;            // true_rate / the target neuron's best pool image (true)
  double predicted = 0.0;        // the calibrated model's rate for its target channel
  double predicted_ratio = 0.0;  // predicted / the same denominator: what the fit promised
  int steps_done = 0;
  std::vector<double> true_rates;  // every channel's neuron (what is reported)
  std::vector<std::uint8_t> pixels;
};
struct SynthBlock {
  int block_index = 0, calibration_version = 0;
  std::string stop_reason;
  double wall_s = 0.0;  // NextBlock, as the client waited for it
  std::vector<SynthStimulus> stimuli;
};

// Asks for a block of `count` stimuli with `strategy` (a SYNTHESIZE one) and scores each
// synthesized stimulus on the true neuron of its target channel.
StatusOr<SynthBlock> synthesize_block(client::StimloopClient& client, const std::string& session_id,
                                      const v1::Strategy& strategy, int count,
                                      const std::vector<std::string>& channel_ids,
                                      TrueNeurons& neurons, const PoolTruth& truth);

// Reports `repeats` Poisson trials of every channel for each stimulus of the block (a refit).
StatusOr<ReportStep> report_block(client::StimloopClient& client, const std::string& session_id,
                                  const SynthBlock& block, int repeats,
                                  std::uint64_t& poisson_state);

}  // namespace stimloop::bench::insilico
