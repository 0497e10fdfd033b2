#include "server/synthesis/request.h"

#include <cmath>

namespace stimloop::synthesis {
namespace {

template <typename Enum, std::size_t N>
StatusOr<Enum> parse_enum(const std::string& s, const char* option,
                          const std::pair<const char*, Enum> (&table)[N]) {
  std::string choices;
  for (const auto& [name, value] : table) {
    if (s == name) return value;
    choices += (choices.empty() ? "" : "|") + std::string(name);
  }
  return invalid_argument(std::string(option) + " '" + s + "' is not one of " + choices);
}

constexpr std::pair<const char*, ObjectiveKind> kObjectives[] = {
    {"max", ObjectiveKind::kMax},
    {"min", ObjectiveKind::kMin},
    {"population", ObjectiveKind::kPopulation},
    {"channel", ObjectiveKind::kChannel},
    {"adversarial", ObjectiveKind::kAdversarial}};
constexpr std::pair<const char*, PopulationMode> kModes[] = {
    {"one-hot", PopulationMode::kOneHot},
    {"contrast", PopulationMode::kContrast},
    {"match", PopulationMode::kMatch}};
constexpr std::pair<const char*, MethodKind> kMethods[] = {{"cowley2026", MethodKind::kCowley2026},
                                                           {"adam", MethodKind::kAdam},
                                                           {"pgd", MethodKind::kPgd}};
constexpr std::pair<const char*, InitKind> kInits[] = {
    {"noise", InitKind::kNoise}, {"gray", InitKind::kGray}, {"image", InitKind::kImage}};
constexpr std::pair<const char*, Norm> kNorms[] = {{"linf", Norm::kLinf}, {"l2", Norm::kL2}};
constexpr std::pair<const char*, Direction> kDirections[] = {
    {"up", Direction::kUp}, {"down", Direction::kDown}, {"target", Direction::kTarget}};

template <typename Enum, std::size_t N>
const char* enum_name(Enum v, const std::pair<const char*, Enum> (&table)[N]) {
  for (const auto& [name, value] : table) {
    if (value == v) return name;
  }
  return "?";
}

bool finite(double v) { return std::isfinite(v); }

}  // namespace

const char* to_string(ObjectiveKind v) { return enum_name(v, kObjectives); }
const char* to_string(PopulationMode v) { return enum_name(v, kModes); }
const char* to_string(MethodKind v) { return enum_name(v, kMethods); }
const char* to_string(InitKind v) { return enum_name(v, kInits); }
const char* to_string(Norm v) { return enum_name(v, kNorms); }
const char* to_string(Direction v) { return enum_name(v, kDirections); }
StatusOr<ObjectiveKind> parse_objective(const std::string& s) {
  return parse_enum(s, "--objective", kObjectives);
}
StatusOr<PopulationMode> parse_population_mode(const std::string& s) {
  return parse_enum(s, "--mode", kModes);
}
StatusOr<MethodKind> parse_method(const std::string& s) {
  return parse_enum(s, "--method", kMethods);
}
StatusOr<Norm> parse_norm(const std::string& s) { return parse_enum(s, "--norm", kNorms); }
StatusOr<Direction> parse_direction(const std::string& s) {
  return parse_enum(s, "--direction", kDirections);
}

MethodDefaults method_defaults(MethodKind method, Norm norm, double epsilon) {
  switch (method) {
    case MethodKind::kCowley2026:
      return {1000, 10.0};  // the authors' values
    case MethodKind::kAdam:
      return {500, 2.0};  // pixel units per step
    case MethodKind::kPgd:
      // Signed steps of epsilon/4 (1 level for epsilon 4) in L-inf; normalised steps of
      // epsilon/5 in L2. 40 steps reach the ball's boundary many times over.
      return {40, norm == Norm::kLinf ? std::max(epsilon / 4.0, 0.25) : epsilon / 5.0};
  }
  return {1000, 10.0};
}

Status validate(const SynthesisRequest& r) {
  if (r.steps < 1 || r.steps > kMaxSteps) {
    return invalid_argument("--steps " + std::to_string(r.steps) + " is outside 1.." +
                            std::to_string(kMaxSteps));
  }
  if (r.count < 1 || r.count > kMaxCount) {
    return invalid_argument("--count " + std::to_string(r.count) + " is outside 1.." +
                            std::to_string(kMaxCount));
  }
  if (!finite(r.step_size) || r.step_size <= 0 || r.step_size > 1e4) {
    return invalid_argument("--step-size must be a positive number up to 1e4");
  }
  if (r.output_index < 0) return out_of_range("--output-index must be >= 0");
  const bool adversarial = r.objective == ObjectiveKind::kAdversarial;
  if (adversarial) {
    if (r.init != InitKind::kImage) {
      return invalid_argument("--objective adversarial needs --init IMAGE (the image to perturb)");
    }
    if (!finite(r.epsilon) || r.epsilon <= 0 || r.epsilon > 255 * 112 * 4) {
      return invalid_argument("--epsilon must be a positive number of pixel levels");
    }
    if (r.direction == Direction::kTarget && !finite(r.target_response)) {
      return invalid_argument("--target-response must be a finite number");
    }
  }
  if (r.method == MethodKind::kPgd && !adversarial) {
    return invalid_argument(
        "--method pgd is for --objective adversarial (it projects onto the "
        "epsilon ball around --init)");
  }
  if (r.objective == ObjectiveKind::kPopulation) {
    if (r.targets.empty() && r.mode != PopulationMode::kMatch) {
      return invalid_argument("--objective population needs --targets I,J,...");
    }
    for (int t : r.targets) {
      if (t < 0) return out_of_range("--targets holds a negative index");
    }
    if (r.mode == PopulationMode::kMatch && r.target_responses.empty()) {
      return invalid_argument("--mode match needs --target-responses FILE");
    }
    for (double v : r.target_responses) {
      if (!finite(v)) return invalid_argument("--target-responses holds NaN or infinity");
    }
  }
  if (r.objective == ObjectiveKind::kChannel && (r.layer < 0 || r.channel < 0)) {
    return invalid_argument("--objective channel needs --layer L and --channel C (both >= 0)");
  }
  if (r.init == InitKind::kImage && r.init_pixels.empty()) {
    return invalid_argument("--init IMAGE: no image pixels loaded");
  }
  for (double v : {r.gradient_blur_sigma, r.image_blur_sigma}) {
    if (!finite(v) || v < 0 || v > 20) return invalid_argument("blur sigmas must be in [0, 20]");
  }
  if (r.image_blur_every < 0) return invalid_argument("--image-blur-every must be >= 0");
  if (!(r.beta1 >= 0 && r.beta1 < 1 && r.beta2 >= 0 && r.beta2 < 1)) {
    return invalid_argument("Adam betas must be in [0, 1)");
  }
  if (r.jitter < 0 || r.jitter > 32) return invalid_argument("--jitter must be in 0..32 pixels");
  if (r.method != MethodKind::kAdam &&
      (r.jitter != 0 || r.tv_weight != 0 || r.l2_weight != 0 || r.rms_contrast != 0)) {
    return invalid_argument("--jitter, --tv, --l2 and --rms-contrast are options of --method adam");
  }
  for (double v : {r.tv_weight, r.l2_weight, r.rms_contrast, r.diversity_weight}) {
    if (!finite(v) || v < 0) {
      return invalid_argument("--tv, --l2, --rms-contrast and --diversity must be >= 0");
    }
  }
  if (r.rms_contrast > 128) return invalid_argument("--rms-contrast must be at most 128");
  if (r.trajectory_every < 1) return invalid_argument("--trajectory-every must be >= 1");
  if (!finite(r.deadline_ms) || r.deadline_ms < 0) {
    return invalid_argument("--deadline-ms must be >= 0");
  }
  if (r.display_size < 0 || r.display_size > 4096) {
    return invalid_argument("--display-size must be in 0..4096");
  }
  return Status::Ok();
}

nlohmann::json to_json(const SynthesisRequest& r) {
  nlohmann::json j = {
      {"objective", to_string(r.objective)},
      {"method", to_string(r.method)},
      {"steps", r.steps},
      {"step_size", r.step_size},
      {"seed", r.seed},
      {"count", r.count},
      {"grayscale", r.grayscale},
      {"init", to_string(r.init)},
      {"trajectory_every", r.trajectory_every},
      {"deadline_ms", r.deadline_ms},
      {"display_size", r.display_size},
  };
  if (r.init == InitKind::kImage) {
    j["init_image"] = r.init_image;
    j["init_image_sha256"] = r.init_image_sha256;
  }
  switch (r.objective) {
    case ObjectiveKind::kMax:
    case ObjectiveKind::kMin:
      j["output_index"] = r.output_index;
      break;
    case ObjectiveKind::kPopulation:
      j["targets"] = r.targets;
      j["mode"] = to_string(r.mode);
      if (r.mode == PopulationMode::kMatch) j["target_responses"] = r.target_responses;
      break;
    case ObjectiveKind::kChannel:
      j["layer"] = r.layer;
      j["channel"] = r.channel;
      break;
    case ObjectiveKind::kAdversarial:
      j["output_index"] = r.output_index;
      j["epsilon"] = r.epsilon;
      j["norm"] = to_string(r.norm);
      j["direction"] = to_string(r.direction);
      if (r.direction == Direction::kTarget) j["target_response"] = r.target_response;
      break;
  }
  switch (r.method) {
    case MethodKind::kCowley2026:
      j["gradient_blur_sigma"] = r.gradient_blur_sigma;
      j["image_blur_every"] = r.image_blur_every;
      j["image_blur_sigma"] = r.image_blur_sigma;
      break;
    case MethodKind::kAdam:
      j["beta1"] = r.beta1;
      j["beta2"] = r.beta2;
      j["jitter"] = r.jitter;
      j["gradient_blur_sigma"] = r.gradient_blur_sigma;
      j["tv_weight"] = r.tv_weight;
      j["l2_weight"] = r.l2_weight;
      j["rms_contrast"] = r.rms_contrast;
      break;
    case MethodKind::kPgd:
      break;
  }
  j["diversity_weight"] = r.diversity_weight;
  return j;
}

StatusOr<SynthesisRequest> request_from_json(const nlohmann::json& j) {
  SynthesisRequest r;
  try {
    ASSIGN_OR_RETURN(r.objective, parse_objective(j.at("objective").get<std::string>()));
    ASSIGN_OR_RETURN(r.method, parse_method(j.at("method").get<std::string>()));
    r.steps = j.at("steps").get<int>();
    r.step_size = j.at("step_size").get<double>();
    r.seed = j.at("seed").get<std::uint64_t>();
    r.count = j.value("count", 1);
    r.grayscale = j.value("grayscale", false);
    const std::string init = j.value("init", std::string("noise"));
    if (init == "noise")
      r.init = InitKind::kNoise;
    else if (init == "gray")
      r.init = InitKind::kGray;
    else if (init == "image")
      r.init = InitKind::kImage;
    else
      return invalid_argument("record: unknown init '" + init + "'");
    r.init_image = j.value("init_image", std::string());
    r.init_image_sha256 = j.value("init_image_sha256", std::string());
    r.trajectory_every = j.value("trajectory_every", 50);
    r.deadline_ms = j.value("deadline_ms", 0.0);
    r.display_size = j.value("display_size", 0);
    r.output_index = j.value("output_index", 0);
    r.targets = j.value("targets", std::vector<int>{});
    if (j.contains("mode")) {
      ASSIGN_OR_RETURN(r.mode, parse_population_mode(j["mode"]));
    }
    r.target_responses = j.value("target_responses", std::vector<double>{});
    r.layer = j.value("layer", -1);
    r.channel = j.value("channel", -1);
    r.epsilon = j.value("epsilon", 4.0);
    if (j.contains("norm")) {
      ASSIGN_OR_RETURN(r.norm, parse_norm(j["norm"]));
    }
    if (j.contains("direction")) {
      ASSIGN_OR_RETURN(r.direction, parse_direction(j["direction"]));
    }
    r.target_response = j.value("target_response", 0.0);
    r.gradient_blur_sigma = j.value("gradient_blur_sigma", 1.0);
    r.image_blur_every = j.value("image_blur_every", 50);
    r.image_blur_sigma = j.value("image_blur_sigma", 1.0);
    r.beta1 = j.value("beta1", 0.9);
    r.beta2 = j.value("beta2", 0.999);
    r.jitter = j.value("jitter", 0);
    r.tv_weight = j.value("tv_weight", 0.0);
    r.l2_weight = j.value("l2_weight", 0.0);
    r.rms_contrast = j.value("rms_contrast", 0.0);
    r.diversity_weight = j.value("diversity_weight", 0.0);
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(std::string("malformed synthesis request: ") + e.what());
  }
  return r;
}

Cowley2026Settings cowley2026_settings(const SynthesisRequest& r,
                                       const std::array<float, 3>& means) {
  Cowley2026Settings settings;
  settings.step_size = r.step_size;
  settings.gradient_sigma = r.gradient_blur_sigma;
  settings.image_blur_every = r.image_blur_every;
  settings.image_sigma = r.image_blur_sigma;
  settings.grayscale = r.grayscale;
  settings.means = means;
  return settings;
}

}  // namespace stimloop::synthesis
