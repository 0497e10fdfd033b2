#include "server/engine/stimulus_output.h"

#include "common/image_io.h"
#include "common/sha256.h"

namespace stimloop::engine {

Status encode_stimulus(const synthesis::SynthesisRequest& request, int height, int width,
                       SynthesisOutput& out) {
  Rgb8Image image;
  image.height = height;
  image.width = width;
  image.pixels = out.stimulus.pixels;
  out.files.pixels_sha256 = sha256_hex(image.pixels);
  if (request.display_size > 0 && (request.display_size != width || width != height)) {
    image = upscale_nearest(image, request.display_size, request.display_size);
  }
  ASSIGN_OR_RETURN(out.png, encode_png(image));
  out.files.png_sha256 = sha256_hex(out.png);
  out.files.width = image.width;
  out.files.height = image.height;
  return Status::Ok();
}

StatusOr<std::vector<SynthesisOutput>> make_outputs(const synthesis::SynthesisRequest& request,
                                                    const ModelInfo& model,
                                                    const std::string& backend_name,
                                                    const synthesis::SynthesisResult& result) {
  const synthesis::ModelIdentity identity{model.id, model.sha256, model.source, model.demo};
  std::vector<SynthesisOutput> outputs;
  for (const auto& st : result.stimuli) {
    SynthesisOutput out;
    out.stimulus = st;
    RETURN_IF_ERROR(encode_stimulus(request, model.in_h, model.in_w, out));
    out.record = synthesis::make_record(request, identity, backend_name, result, st, out.files);
    outputs.push_back(std::move(out));
  }
  return outputs;
}

}  // namespace stimloop::engine
