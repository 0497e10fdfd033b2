// 8-bit RGB images in and out (PNG, JPEG, anything OpenCV decodes), always in RGB order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace stimloop {

struct Rgb8Image {
  int height = 0, width = 0;
  std::vector<std::uint8_t> pixels;  // height x width x 3, RGB
};

// Grayscale inputs become three equal channels; an alpha channel is dropped.
StatusOr<Rgb8Image> read_rgb8(const std::string& path);
// Area-averaging resize (the right filter for shrinking photographs).
Rgb8Image resize_rgb8(const Rgb8Image& image, int height, int width);
Status write_png(const std::string& path, const Rgb8Image& image);
// PNG bytes of an image (deterministic for the same pixels and libpng), and their decoding.
StatusOr<std::vector<std::uint8_t>> encode_png(const Rgb8Image& image);
StatusOr<Rgb8Image> decode_image(const std::vector<std::uint8_t>& bytes);
// Nearest-neighbour upscaling (display copies of stimuli keep their pixels crisp).
Rgb8Image upscale_nearest(const Rgb8Image& image, int height, int width);

}  // namespace stimloop
