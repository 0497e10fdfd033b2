#include "server/engine/stimulus_output.h"

#include <unistd.h>

#include <algorithm>

#include "common/durable_file.h"
#include "common/finite.h"
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
    RETURN_IF_ERROR(check_finite<float>(
        st.outputs, model.id + ": outputs of stimulus " + std::to_string(st.index)));
    RETURN_IF_ERROR(
        check_finite<double>(std::span(&st.response, 1),
                             model.id + ": response of stimulus " + std::to_string(st.index)));
    SynthesisOutput out;
    out.stimulus = st;
    RETURN_IF_ERROR(encode_stimulus(request, model.in_h, model.in_w, out));
    out.record = synthesis::make_record(request, identity, backend_name, result, st, out.files);
    outputs.push_back(std::move(out));
  }
  return outputs;
}

namespace {

// The record of `output` naming `png_path`, as written beside it.
std::string record_text(const SynthesisOutput& output, const std::string& png_path) {
  nlohmann::json record = output.record;
  record["png"] = png_path;
  return record.dump(2) + "\n";
}

std::string json_path_of(const std::string& png_path) {
  return png_path.substr(0, png_path.size() - 4) + ".json";
}

std::span<const std::uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

Status write_stimulus_files(const std::string& png_path, const SynthesisOutput& output) {
  const std::string json_path = json_path_of(png_path);
  // Both are written and synced before either gets its name, so a full disk leaves neither.
  ASSIGN_OR_RETURN(PendingFile png, PendingFile::write(png_path, output.png));
  const std::string text = record_text(output, png_path);
  ASSIGN_OR_RETURN(PendingFile record, PendingFile::write(json_path, bytes_of(text)));
  RETURN_IF_ERROR(png.commit());
  RETURN_IF_ERROR(record.commit());
  return sync_path(parent_directory(png_path));
}

StatusOr<std::string> save_stimulus(const std::string& directory, const std::string& request_id,
                                    int& generation, const SynthesisOutput& output) {
  const std::string base =
      directory + "/" + request_id + "_" + std::to_string(output.stimulus.index);
  ASSIGN_OR_RETURN(PendingFile png, PendingFile::write(base + ".png", output.png));
  // The PNG's name is claimed without replacing anything; its record follows under the same stem.
  std::string stem;
  for (int n = std::max(generation, 1);; ++n) {
    stem = n == 1 ? base : base + "." + std::to_string(n);
    ASSIGN_OR_RETURN(const bool claimed, png.commit_if_absent(stem + ".png"));
    if (claimed) {
      generation = n;
      break;
    }
  }
  const std::string png_path = stem + ".png";
  if (Status s = write_file_atomically(stem + ".json", record_text(output, png_path)); !s.ok()) {
    ::unlink(png_path.c_str());  // no PNG without its record when the disk is full
    return s;
  }
  return png_path;
}

}  // namespace stimloop::engine
