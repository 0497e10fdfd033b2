// What a synthesis run is asked to do: every parameter that determines its result. A record
// holds this request in full, so that `stimloop replay` can recompute the stimulus from the
// record alone. Serialised to and from JSON here, validated in one place.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/device_synthesis.h"

namespace stimloop::synthesis {

enum class ObjectiveKind { kMax, kMin, kPopulation, kChannel, kAdversarial };
enum class PopulationMode { kOneHot, kContrast, kMatch };
enum class MethodKind { kCowley2026, kAdam, kPgd };
enum class InitKind { kNoise, kGray, kImage };
enum class Norm { kLinf, kL2 };
enum class Direction { kUp, kDown, kTarget };

struct SynthesisRequest {
  ObjectiveKind objective = ObjectiveKind::kMax;
  int output_index = 0;  // max / min / adversarial

  // population (multi-output models)
  std::vector<int> targets;
  PopulationMode mode = PopulationMode::kOneHot;
  std::vector<double> target_responses;  // match: one value per output

  // channel: mean activation of channel `channel` of Keras layer `layer` (layer0_conv = 0), after
  // its ReLU
  int layer = -1;
  int channel = -1;

  // adversarial: stay within `epsilon` (pixel units 0..255) of the initial image
  double epsilon = 4.0;
  Norm norm = Norm::kLinf;
  Direction direction = Direction::kUp;
  double target_response = 0.0;

  MethodKind method = MethodKind::kCowley2026;
  int steps = 1000;
  double step_size = 10.0;
  std::uint64_t seed = 0;
  int count = 1;           // stimuli in the batch; stimulus k uses seed + k
  bool grayscale = false;  // with an --init image, the grayed image is the starting point (and,
                           // for adversarial runs, the center of the epsilon ball)
  InitKind init = InitKind::kNoise;
  std::string init_image;                 // path, as given (for the record)
  std::string init_image_sha256;          // of the decoded 8-bit pixels, checked on replay
  std::vector<std::uint8_t> init_pixels;  // h x w x 3, not serialised (reloaded from the path)

  // cowley2026
  double gradient_blur_sigma = 1.0;
  int image_blur_every = 50;  // 0: never
  double image_blur_sigma = 1.0;

  // adam
  double beta1 = 0.9, beta2 = 0.999;
  int jitter = 0;                 // random shift of up to this many pixels per step
  double tv_weight = 0.0;         // total-variation penalty
  double l2_weight = 0.0;         // L2 penalty on the re-centered image
  double rms_contrast = 0.0;      // > 0: image renormalised to this RMS contrast (pixel units)
  double diversity_weight = 0.0;  // penalty on the mean cosine similarity within the batch

  int trajectory_every = 50;  // record the best objective every N steps
  double deadline_ms = 0.0;   // 0: none. Not needed for replay (steps_done is).
  int display_size = 0;       // > 0: PNG upscaled (nearest neighbour) to this size
};

const char* to_string(ObjectiveKind v);
const char* to_string(PopulationMode v);
const char* to_string(MethodKind v);
const char* to_string(InitKind v);
const char* to_string(Norm v);
const char* to_string(Direction v);
StatusOr<ObjectiveKind> parse_objective(const std::string& s);
StatusOr<PopulationMode> parse_population_mode(const std::string& s);
StatusOr<MethodKind> parse_method(const std::string& s);
StatusOr<Norm> parse_norm(const std::string& s);
StatusOr<Direction> parse_direction(const std::string& s);

// The defaults each method starts from when the user gives no --steps / --step-size.
struct MethodDefaults {
  int steps;
  double step_size;
};
MethodDefaults method_defaults(MethodKind method, Norm norm, double epsilon);

// Checks ranges and combinations that do not depend on the model (absurd step counts, missing
// targets, Adam options with another method, pgd without an adversarial objective, ...).
// Messages name the option.
Status validate(const SynthesisRequest& request);

nlohmann::json to_json(const SynthesisRequest& request);
StatusOr<SynthesisRequest> request_from_json(const nlohmann::json& j);

// Hard limits on what one request may ask for.
inline constexpr int kMaxSteps = 1'000'000;
inline constexpr int kMaxCount = 1024;

// The device loop's settings (kernels/device_synthesis.h) of a cowley2026 request.
Cowley2026Settings cowley2026_settings(const SynthesisRequest& request,
                                       const std::array<float, 3>& means);

}  // namespace stimloop::synthesis
