// An image pool a session draws from: a directory of PNG/JPEG files or a .zip of them (like the
// published images_<session>.zip), named on the server by --pool NAME=PATH. Images are decoded
// once and kept in memory in a stable natural order ("image2.jpg" before "image10.jpg").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "common/status.h"

namespace stimloop::sessions {

struct PoolImage {
  std::string name;  // the file name inside the directory or zip (without folders)
  Rgb8Image image;
};

struct ImagePool {
  std::string name;  // the NAME of --pool NAME=PATH
  std::string path;
  std::vector<PoolImage> images;
};

// Limits that keep a hostile or mistaken pool from exhausting memory.
struct PoolLimits {
  int max_images = 20000;
  std::int64_t max_file_bytes = 16 << 20;  // one image file (or zip member)
  int max_side = 4096;
};

// Loads a directory (not recursive; *.png, *.jpg, *.jpeg, any case) or a zip (members with those
// extensions, in any folder; names are the base names). Errors name the file or member:
// NOT_FOUND (missing path), INVALID_ARGUMENT (no images, undecodable image, duplicate base name),
// RESOURCE_EXHAUSTED (a limit). Every image must have the same size.
StatusOr<ImagePool> load_image_pool(const std::string& name, const std::string& path,
                                    const PoolLimits& limits = {});

// "NAME=PATH" as the server's --pool flag takes it.
struct PoolFlag {
  std::string name, path;
};
StatusOr<PoolFlag> parse_pool_flag(const std::string& flag);

}  // namespace stimloop::sessions
