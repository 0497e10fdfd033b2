// The pieces of stimloop-bench-session-replay (bench_session_replay.cpp): the published
// repeat-averaged responses of a session, the seeded fit / held-out split of its images, and one
// replayed closed-loop session per readout form driven through the Sessions protocol.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/lib/stimloop_client.h"
#include "common/status.h"

namespace stimloop::bench::replay {

namespace v1 = ::stimloop::v1;

// responses_<session>.npy: float64 (neurons, images); row k is compact_model_<session>_neuron<k>,
// column i is image i+1 of images_<session>.zip.
struct SessionData {
  std::string session;
  int neurons = 0, images = 0;
  std::vector<double> responses;  // neurons x images, row-major
  double at(int neuron, int image) const {
    return responses[static_cast<std::size_t>(neuron) * images + image];
  }
};
StatusOr<SessionData> load_responses(const std::string& v4_dir, const std::string& session);

// The pool's name of image i (0-based): image0001.jpg for 0, the zip's member base names.
std::string image_name(int index);

// A seeded Fisher-Yates shuffle of 0..images-1 (std::mt19937_64's raw output, so it is the same
// with every standard library): the first `fit` are fitted in that order, the rest are held out
// (kept in ascending order).
struct Split {
  std::uint64_t seed = 0;
  std::vector<int> fit, held_out;
};
Split split_images(int images, int fit, std::uint64_t seed);

double median(std::vector<double> v);  // the mean of the middle two for an even count; 0 if empty

struct ReplayOptions {
  std::string base;              // base model id
  int neurons = 0;               // channels: the session's first N neurons
  int block = 100;               // stimuli per ReportResponses (every report is a refit)
  double ridge_smoothing = 0.0;  // RIDGE: the session's calibration.ridge_smoothing
};

// One ReportResponses: how many stimuli the fit has seen after it, and what it answered.
struct ReportStep {
  int stimuli = 0, version = 0;
  double median_cv_r = 0.0, report_s = 0.0, next_block_s = 0.0;
};

struct FormResult {
  std::string form, session_id;
  std::vector<double> r;             // per neuron: predicted vs recorded on the held-out images
  std::vector<double> cv_r, lambda;  // per neuron: the server's final calibration
  std::vector<ReportStep> reports;
  int clamped = 0;             // recorded values below 0 reported as 0
  double most_negative = 0.0;  // the smallest of them (0 when none)
  double fit_s = 0.0, held_out_s = 0.0;
  int calibration_version = 0;
  // The held-out images as the server handed them out (RAW_RGB8), for the compact models.
  std::vector<std::string> held_out_pixels;
  int height = 0, width = 0;
};

// Opens the session, reports every fit image's recorded responses block by block, then asks for
// the held-out images and scores the final fit's `predicted` values against the recordings.
StatusOr<FormResult> replay_form(client::StimloopClient& client, const SessionData& data,
                                 const Split& split, const ReplayOptions& options,
                                 v1::ReadoutForm form);

// Per-neuron r of the published compact models (compact_model_<session>_neuron<k>) on the
// held-out images, through Predict (at most 64 models and 64 images per call).
StatusOr<std::vector<double>> compact_r(client::StimloopClient& client, const SessionData& data,
                                        const Split& split, int neurons, const FormResult& images,
                                        double* seconds);

}  // namespace stimloop::bench::replay
