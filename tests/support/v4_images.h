// Reading the published V4 data for golden tests: the index files of golden/ (models_list.txt,
// shared_models.txt, grad_models.txt), the 64 lossless golden images, and single JPEG members of
// the session image zips (images/images_<session>.zip), plus deterministic synthetic images.
// Everything is read in place from the data directory; nothing is copied into the repository.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "common/status.h"

namespace stimloop::test {

inline constexpr int kV4ImageSide = 112;
inline constexpr std::size_t kV4ImageBytes = std::size_t{kV4ImageSide} * kV4ImageSide * 3;

// One row of golden/models_list.txt.
struct V4CompactModel {
  int index = 0;
  std::string session;  // "190923", ...
  int neuron = 0;
  std::string file;  // file name inside compact_models/
  std::vector<int> filters;
  std::int64_t macs = 0;  // multiply-accumulates per image
};

// One row of golden/grad_models.txt.
struct V4GradModel {
  int grad_index = 0;
  std::string session;
  int neuron = 0;
  int model_index = 0;  // row of models_list.txt
};

StatusOr<std::vector<V4CompactModel>> read_models_list(const std::string& data_dir);
// File names inside shared_compact_models/, in the row order of the golden arrays.
StatusOr<std::vector<std::string>> read_shared_models_list(const std::string& data_dir);
StatusOr<std::vector<V4GradModel>> read_grad_models_list(const std::string& data_dir);

// golden/images/gNN.png for NN = 0..count-1, concatenated: count x 112 x 112 x 3 RGB bytes.
StatusOr<std::vector<std::uint8_t>> read_golden_images(const std::string& data_dir, int count = 64);

// Everything the golden gradient checks read: the model lists, the 4 gradient images (golden
// images 0, 1, 32, 33, concatenated), grad_input_f64 (12, 4, 112, 112, 3) and
// grad_responses_f64 (12, 4), shapes checked.
inline constexpr int kGoldenGradImages[4] = {0, 1, 32, 33};
struct GoldenGradients {
  std::vector<V4CompactModel> models;
  std::vector<V4GradModel> grad_models;
  std::vector<std::uint8_t> raw;
  std::vector<double> expected_grad;
  std::vector<double> expected_resp;
};
StatusOr<GoldenGradients> read_golden_gradients(const std::string& data_dir);

// Image `number` (1-based, as in the member name imageNNNN.jpg) of images/images_<session>.zip,
// decoded as RGB. The member is found whatever folder it sits in (the 190923 zip has one).
StatusOr<Rgb8Image> read_session_zip_image(const std::string& data_dir, const std::string& session,
                                           int number);

// Deterministic 112x112 RGB test images that are not natural photographs.
enum class SyntheticImage {
  kUniformNoise,     // every byte uniform in 0..255
  kSynthStartNoise,  // the synthesis start: 128 + 50 * uniform(0,1), as the authors' code
  kAllBlack,         // saturated low: every byte 0
  kAllWhite,         // saturated high: every byte 255
};
std::vector<std::uint8_t> synthetic_image(SyntheticImage kind, std::uint32_t seed);

}  // namespace stimloop::test
