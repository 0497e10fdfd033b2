// Between the wire (stimloop.v1 messages) and the engine: images decoded and checked, synthesis
// specs turned into SynthesisRequests with the CLI's defaults, models described. Every error
// names the field it is about (e.g. "images[3].data").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/server_context.h>

#include "models/model.h"
#include "server/engine/priority.h"
#include "server/synthesis/request.h"
#include "stimloop/v1/stimloop.pb.h"

namespace stimloop::service {

namespace v1 = ::stimloop::v1;

// Limits on one request (the proto documents them).
inline constexpr int kMaxPredictImages = 256;
inline constexpr int kMaxGradientImages = 64;
inline constexpr int kMaxPredictModels = 64;
inline constexpr int kMaxImageSide = 4096;
inline constexpr double kMaxDeadlineMs = 3'600'000.0;
inline constexpr int kMaxRequestBytes = 32 << 20;

// Decodes `image` (raw or PNG) and checks it is height x width RGB.
StatusOr<std::vector<std::uint8_t>> decode_image(const v1::Image& image, int height, int width,
                                                 const std::string& field);
// All images of a request, concatenated (n x height x width x 3).
StatusOr<std::vector<std::uint8_t>> decode_images(
    const google::protobuf::RepeatedPtrField<v1::Image>& images, int height, int width,
    int max_images, const std::string& field);

// Fills `out` in the requested encoding (PNG unless RAW_RGB8): `png` is used when given.
void encode_image(const std::vector<std::uint8_t>& pixels, int height, int width,
                  v1::ImageEncoding encoding, const std::vector<std::uint8_t>* png, v1::Image* out);

// The spec as a SynthesisRequest: defaults applied, every field checked (finite numbers, enum
// values, combinations), model-dependent checks (output index, targets, layer) included.
StatusOr<synthesis::SynthesisRequest> to_request(const v1::SynthesisSpec& spec, const Model& model);

StatusOr<engine::Priority> to_priority(v1::Priority priority);
void fill_model_info(const ModelInfo& info, const std::string& backend, v1::ModelInfo* out);

// The earlier of gRPC's deadline and deadline_ms (checked: 0 or in (0, 1 h]).
StatusOr<std::optional<std::chrono::steady_clock::time_point>> request_deadline(
    const grpc::ServerContextBase& context, double deadline_ms);

}  // namespace stimloop::service
