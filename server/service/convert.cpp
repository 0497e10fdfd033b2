#include "server/service/convert.h"

#include <cmath>
#include <cstring>

#include "common/image_io.h"
#include "common/sha256.h"
#include "server/synthesis/objective.h"

namespace stimloop::service {
namespace {

std::string dims(int h, int w) { return std::to_string(w) + "x" + std::to_string(h); }

// The PNG header's size, read before decoding so a tiny file claiming a huge image (a
// decompression bomb) is refused without allocating it.
StatusOr<std::pair<int, int>> png_size(const std::string& data, const std::string& field) {
  static const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (data.size() < 24 || std::memcmp(data.data(), kSignature, 8) != 0 ||
      data.compare(12, 4, "IHDR") != 0) {
    return invalid_argument(field + ": not a PNG file");
  }
  auto be32 = [&](std::size_t at) {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data()) + at;
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
  };
  const std::uint32_t w = be32(16), h = be32(20);
  if (w == 0 || h == 0 || w > kMaxImageSide || h > kMaxImageSide) {
    return invalid_argument(field + ": PNG claims " + std::to_string(w) + "x" + std::to_string(h) +
                            " pixels (at most " + std::to_string(kMaxImageSide) + " a side)");
  }
  return std::pair<int, int>{static_cast<int>(h), static_cast<int>(w)};
}

Status finite(double v, const char* field) {
  if (!std::isfinite(v))
    return invalid_argument(std::string("spec.") + field + " is NaN or infinite");
  return Status::Ok();
}

}  // namespace

StatusOr<std::vector<std::uint8_t>> decode_image(const v1::Image& image, int height, int width,
                                                 const std::string& field) {
  const std::size_t expected = static_cast<std::size_t>(height) * width * 3;
  switch (image.encoding()) {
    case v1::RAW_RGB8: {
      if (image.height() != height || image.width() != width) {
        return invalid_argument(field + ": raw image is " + dims(image.height(), image.width()) +
                                "; the model takes " + dims(height, width) +
                                " (set width and height; resize on the client)");
      }
      if (image.data().size() != expected) {
        return invalid_argument(field + ".data holds " + std::to_string(image.data().size()) +
                                " bytes; a " + dims(height, width) + " RGB image has " +
                                std::to_string(expected));
      }
      return std::vector<std::uint8_t>(image.data().begin(), image.data().end());
    }
    case v1::PNG: {
      ASSIGN_OR_RETURN(auto size, png_size(image.data(), field + ".data"));
      if (size.first != height || size.second != width) {
        return invalid_argument(field + ": PNG is " + dims(size.first, size.second) +
                                "; the model takes " + dims(height, width));
      }
      if ((image.height() != 0 && image.height() != height) ||
          (image.width() != 0 && image.width() != width)) {
        return invalid_argument(field + ": width/height disagree with the PNG's own size");
      }
      auto decoded_or = stimloop::decode_image(
          std::vector<std::uint8_t>(image.data().begin(), image.data().end()));
      if (!decoded_or.ok()) return decoded_or.status().with_context(field + ".data");
      Rgb8Image decoded = std::move(decoded_or).value();
      if (decoded.pixels.size() != expected) {
        return invalid_argument(field + ": PNG decoded to an unexpected size");
      }
      return std::move(decoded.pixels);
    }
    default:
      return invalid_argument(field + ".encoding must be RAW_RGB8 or PNG");
  }
}

StatusOr<std::vector<std::uint8_t>> decode_images(
    const google::protobuf::RepeatedPtrField<v1::Image>& images, int height, int width,
    int max_images, const std::string& field) {
  if (images.empty()) return invalid_argument(field + ": no image given");
  if (images.size() > max_images) {
    return invalid_argument(field + ": " + std::to_string(images.size()) + " images; at most " +
                            std::to_string(max_images) + " per request");
  }
  std::vector<std::uint8_t> raw;
  raw.reserve(static_cast<std::size_t>(images.size()) * height * width * 3);
  for (int i = 0; i < images.size(); ++i) {
    ASSIGN_OR_RETURN(auto pixels,
                     decode_image(images[i], height, width, field + "[" + std::to_string(i) + "]"));
    raw.insert(raw.end(), pixels.begin(), pixels.end());
  }
  return raw;
}

void encode_image(const std::vector<std::uint8_t>& pixels, int height, int width,
                  v1::ImageEncoding encoding, const std::vector<std::uint8_t>* png,
                  v1::Image* out) {
  if (encoding == v1::RAW_RGB8 || png == nullptr) {
    if (encoding != v1::RAW_RGB8) {  // PNG asked for but not encoded yet
      Rgb8Image image{height, width, pixels};
      auto bytes = encode_png(image);
      if (bytes.ok()) {
        out->set_encoding(v1::PNG);
        out->set_height(height);
        out->set_width(width);
        out->set_data(std::string(bytes->begin(), bytes->end()));
        return;
      }
    }
    out->set_encoding(v1::RAW_RGB8);
    out->set_height(height);
    out->set_width(width);
    out->set_data(std::string(pixels.begin(), pixels.end()));
    return;
  }
  out->set_encoding(v1::PNG);
  out->set_data(std::string(png->begin(), png->end()));
}

StatusOr<engine::Priority> to_priority(v1::Priority priority) {
  switch (priority) {
    case v1::RIG:
      return engine::Priority::kRig;
    case v1::PRIORITY_UNSPECIFIED:
    case v1::INTERACTIVE:
      return engine::Priority::kInteractive;
    case v1::CAMPAIGN:
      return engine::Priority::kCampaign;
    default:
      return invalid_argument("priority " + std::to_string(int(priority)) + " is not RIG, " +
                              "INTERACTIVE or CAMPAIGN");
  }
}

StatusOr<synthesis::SynthesisRequest> to_request(const v1::SynthesisSpec& spec,
                                                 const Model& model) {
  using namespace synthesis;
  SynthesisRequest r;
  for (const auto& [value, name] : {std::pair{spec.step_size(), "step_size"},
                                    {spec.epsilon(), "epsilon"},
                                    {spec.target_response(), "target_response"},
                                    {spec.gradient_blur_sigma(), "gradient_blur_sigma"},
                                    {spec.image_blur_sigma(), "image_blur_sigma"},
                                    {spec.beta1(), "beta1"},
                                    {spec.beta2(), "beta2"},
                                    {spec.tv_weight(), "tv_weight"},
                                    {spec.l2_weight(), "l2_weight"},
                                    {spec.rms_contrast(), "rms_contrast"},
                                    {spec.diversity_weight(), "diversity_weight"}}) {
    RETURN_IF_ERROR(finite(value, name));
  }
  for (double v : spec.target_responses()) RETURN_IF_ERROR(finite(v, "target_responses"));

  switch (spec.objective()) {
    case v1::MAX:
      r.objective = ObjectiveKind::kMax;
      break;
    case v1::MIN:
      r.objective = ObjectiveKind::kMin;
      break;
    case v1::POPULATION:
      r.objective = ObjectiveKind::kPopulation;
      break;
    case v1::CHANNEL:
      r.objective = ObjectiveKind::kChannel;
      break;
    case v1::ADVERSARIAL:
      r.objective = ObjectiveKind::kAdversarial;
      break;
    default:
      return invalid_argument(
          "spec.objective must be MAX, MIN, POPULATION, CHANNEL or ADVERSARIAL");
  }
  switch (spec.method()) {
    case v1::METHOD_UNSPECIFIED:
      r.method = r.objective == ObjectiveKind::kAdversarial ? MethodKind::kPgd
                 : (r.objective == ObjectiveKind::kMax || r.objective == ObjectiveKind::kMin)
                     ? MethodKind::kCowley2026
                     : MethodKind::kAdam;
      break;
    case v1::COWLEY2026:
      r.method = MethodKind::kCowley2026;
      break;
    case v1::ADAM:
      r.method = MethodKind::kAdam;
      break;
    case v1::PGD:
      r.method = MethodKind::kPgd;
      break;
    default:
      return invalid_argument("spec.method is not a known method");
  }
  switch (spec.population_mode()) {
    case v1::POPULATION_MODE_UNSPECIFIED:
    case v1::ONE_HOT:
      r.mode = PopulationMode::kOneHot;
      break;
    case v1::CONTRAST:
      r.mode = PopulationMode::kContrast;
      break;
    case v1::MATCH:
      r.mode = PopulationMode::kMatch;
      break;
    default:
      return invalid_argument("spec.population_mode is not a known mode");
  }
  switch (spec.norm()) {
    case v1::NORM_UNSPECIFIED:
    case v1::LINF:
      r.norm = Norm::kLinf;
      break;
    case v1::L2:
      r.norm = Norm::kL2;
      break;
    default:
      return invalid_argument("spec.norm must be LINF or L2");
  }
  if (spec.has_target_response()) {
    if (spec.direction() != v1::DIRECTION_UNSPECIFIED) {
      return invalid_argument("spec: give either direction or has_target_response, not both");
    }
    r.direction = Direction::kTarget;
    r.target_response = spec.target_response();
  } else {
    switch (spec.direction()) {
      case v1::DIRECTION_UNSPECIFIED:
      case v1::UP:
        r.direction = Direction::kUp;
        break;
      case v1::DOWN:
        r.direction = Direction::kDown;
        break;
      default:
        return invalid_argument("spec.direction must be UP or DOWN");
    }
  }
  if (r.objective != ObjectiveKind::kAdversarial &&
      (spec.direction() != v1::DIRECTION_UNSPECIFIED || spec.has_target_response())) {
    return invalid_argument("spec.direction and spec.target_response are for ADVERSARIAL");
  }

  r.output_index = spec.output_index();
  r.epsilon = spec.epsilon() != 0 ? spec.epsilon() : 4.0;
  const auto defaults = method_defaults(r.method, r.norm, r.epsilon);
  r.steps = spec.steps() != 0 ? spec.steps() : defaults.steps;
  r.step_size = spec.step_size() != 0 ? spec.step_size() : defaults.step_size;
  r.seed = spec.seed();
  r.count = spec.count() != 0 ? spec.count() : 1;
  r.grayscale = spec.grayscale();
  r.targets.assign(spec.targets().begin(), spec.targets().end());
  r.target_responses.assign(spec.target_responses().begin(), spec.target_responses().end());
  r.layer = spec.objective() == v1::CHANNEL ? spec.layer() : -1;
  r.channel = spec.objective() == v1::CHANNEL ? spec.channel() : -1;
  r.gradient_blur_sigma = spec.gradient_blur_sigma() != 0 ? spec.gradient_blur_sigma() : 1.0;
  r.image_blur_every = spec.image_blur_every() == 0    ? 50
                       : spec.image_blur_every() == -1 ? 0
                                                       : spec.image_blur_every();
  if (spec.image_blur_every() < -1) {
    return invalid_argument("spec.image_blur_every must be -1 (off), 0 (default) or positive");
  }
  r.image_blur_sigma = spec.image_blur_sigma() != 0 ? spec.image_blur_sigma() : 1.0;
  r.beta1 = spec.beta1() != 0 ? spec.beta1() : 0.9;
  r.beta2 = spec.beta2() != 0 ? spec.beta2() : 0.999;
  r.jitter = spec.jitter();
  r.tv_weight = spec.tv_weight();
  r.l2_weight = spec.l2_weight();
  r.rms_contrast = spec.rms_contrast();
  r.diversity_weight = spec.diversity_weight();
  r.trajectory_every = spec.trajectory_every() != 0 ? spec.trajectory_every() : 50;
  r.display_size = spec.display_size();

  const bool has_image = spec.has_init_image();
  switch (spec.init()) {
    case v1::INIT_UNSPECIFIED:
      r.init = has_image ? InitKind::kImage : InitKind::kNoise;
      break;
    case v1::NOISE:
      r.init = InitKind::kNoise;
      break;
    case v1::GRAY:
      r.init = InitKind::kGray;
      break;
    case v1::IMAGE:
      r.init = InitKind::kImage;
      break;
    default:
      return invalid_argument("spec.init must be NOISE, GRAY or IMAGE");
  }
  if (r.init == InitKind::kImage) {
    if (!has_image) return invalid_argument("spec.init IMAGE needs spec.init_image");
    ASSIGN_OR_RETURN(r.init_pixels, decode_image(spec.init_image(), model.info.in_h,
                                                 model.info.in_w, "spec.init_image"));
    r.init_image = "(sent by the client)";
    r.init_image_sha256 = sha256_hex(r.init_pixels);
  } else if (has_image) {
    return invalid_argument("spec.init_image is given but spec.init is not IMAGE");
  }
  RETURN_IF_ERROR(validate(r).with_context("spec (named as the CLI's flags)"));
  // Model-dependent checks (output index, targets, layer, channel) before the job is accepted.
  if (auto objective = make_objective(r, model.network); !objective.ok()) {
    return objective.status().with_context("spec (named as the CLI's flags)");
  }
  return r;
}

void fill_model_info(const ModelInfo& info, const std::string& backend, v1::ModelInfo* out) {
  out->set_id(info.id);
  out->set_sha256(info.sha256);
  out->set_demo(info.demo);
  out->set_description(info.description);
  out->set_input_height(info.in_h);
  out->set_input_width(info.in_w);
  out->set_input_channels(info.in_c);
  out->set_num_outputs(info.num_outputs);
  for (int f : info.filters) out->add_filters(f);
  out->set_parameters(info.parameters);
  out->set_macs_per_image(info.macs_per_image);
  out->set_backend(backend);
}

StatusOr<std::optional<std::chrono::steady_clock::time_point>> request_deadline(
    const grpc::ServerContextBase& context, double deadline_ms) {
  using Steady = std::chrono::steady_clock;
  using System = std::chrono::system_clock;
  if (!std::isfinite(deadline_ms) || deadline_ms < 0 || deadline_ms > kMaxDeadlineMs) {
    return invalid_argument("deadline_ms must be 0 (none) or in (0, 3600000]");
  }
  std::optional<Steady::time_point> deadline;
  const auto steady_now = Steady::now();
  if (deadline_ms > 0) {
    deadline = steady_now + std::chrono::duration_cast<Steady::duration>(
                                std::chrono::duration<double, std::milli>(deadline_ms));
  }
  const System::time_point grpc_deadline = context.deadline();
  const auto system_now = System::now();
  // No gRPC deadline reads as a time centuries away.
  if (grpc_deadline < system_now + std::chrono::hours(24 * 365)) {
    const auto left = std::chrono::duration_cast<Steady::duration>(grpc_deadline - system_now);
    const auto from_grpc = steady_now + left;
    if (!deadline || from_grpc < *deadline) deadline = from_grpc;
  }
  return deadline;
}

}  // namespace stimloop::service
