#include "tests/support/v4_images.h"

#include "common/npy.h"

#include <zip.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace stimloop::test {
namespace {

// The non-comment, non-empty lines of a golden index file, split on tabs.
StatusOr<std::vector<std::vector<std::string>>> read_table(const std::string& path,
                                                           std::size_t min_columns) {
  std::ifstream in(path);
  if (!in) return not_found("cannot open " + path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, '\t')) cells.push_back(cell);
    if (cells.size() < min_columns) {
      return data_loss(path + ": line '" + line + "' has " + std::to_string(cells.size()) +
                       " columns, expected at least " + std::to_string(min_columns));
    }
    rows.push_back(std::move(cells));
  }
  return rows;
}

std::vector<int> parse_int_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
  return out;
}

struct ZipCloser {
  void operator()(zip_t* z) const { zip_close(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

StatusOr<std::vector<std::uint8_t>> read_zip_member(const std::string& zip_path,
                                                    const std::string& member) {
  int err = 0;
  std::unique_ptr<zip_t, ZipCloser> archive(zip_open(zip_path.c_str(), ZIP_RDONLY, &err));
  if (!archive)
    return not_found("cannot open zip " + zip_path + " (libzip error " + std::to_string(err) + ")");
  // ZIP_FL_NODIR: match the file name whatever folder the member sits in.
  const zip_int64_t index = zip_name_locate(archive.get(), member.c_str(), ZIP_FL_NODIR);
  if (index < 0) return not_found(zip_path + " holds no member " + member);
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(archive.get(), static_cast<zip_uint64_t>(index), 0, &st) != 0 ||
      (st.valid & ZIP_STAT_SIZE) == 0) {
    return data_loss(zip_path + ": cannot stat " + member);
  }
  std::unique_ptr<zip_file_t, ZipFileCloser> file(
      zip_fopen_index(archive.get(), static_cast<zip_uint64_t>(index), 0));
  if (!file) return data_loss(zip_path + ": cannot open member " + member);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(st.size));
  const zip_int64_t got = zip_fread(file.get(), bytes.data(), st.size);
  if (got < 0 || static_cast<zip_uint64_t>(got) != st.size) {
    return data_loss(zip_path + ": short read of " + member);
  }
  return bytes;
}

}  // namespace

StatusOr<std::vector<V4CompactModel>> read_models_list(const std::string& data_dir) {
  const std::string path = (fs::path(data_dir) / "golden" / "models_list.txt").string();
  ASSIGN_OR_RETURN(auto rows, read_table(path, 6));
  std::vector<V4CompactModel> models;
  try {
    for (const auto& r : rows) {
      V4CompactModel m;
      m.index = std::stoi(r[0]);
      m.session = r[1];
      m.neuron = std::stoi(r[2]);
      m.file = r[3];
      m.filters = parse_int_list(r[4]);
      m.macs = std::stoll(r[5]);
      if (m.index != static_cast<int>(models.size())) {
        return data_loss(path + ": rows are not numbered 0, 1, 2, ...");
      }
      models.push_back(std::move(m));
    }
  } catch (const std::exception& e) {
    return data_loss(path + ": unparsable number (" + e.what() + ")");
  }
  return models;
}

StatusOr<std::vector<std::string>> read_shared_models_list(const std::string& data_dir) {
  const std::string path = (fs::path(data_dir) / "golden" / "shared_models.txt").string();
  ASSIGN_OR_RETURN(auto rows, read_table(path, 2));
  std::vector<std::string> files;
  for (const auto& r : rows) files.push_back(r[1]);
  return files;
}

StatusOr<std::vector<V4GradModel>> read_grad_models_list(const std::string& data_dir) {
  const std::string path = (fs::path(data_dir) / "golden" / "grad_models.txt").string();
  ASSIGN_OR_RETURN(auto rows, read_table(path, 4));
  std::vector<V4GradModel> models;
  try {
    for (const auto& r : rows) {
      models.push_back({std::stoi(r[0]), r[1], std::stoi(r[2]), std::stoi(r[3])});
    }
  } catch (const std::exception& e) {
    return data_loss(path + ": unparsable number (" + e.what() + ")");
  }
  return models;
}

StatusOr<std::vector<std::uint8_t>> read_golden_images(const std::string& data_dir, int count) {
  std::vector<std::uint8_t> pixels;
  pixels.reserve(kV4ImageBytes * static_cast<std::size_t>(count));
  for (int k = 0; k < count; ++k) {
    char name[16];
    std::snprintf(name, sizeof name, "g%02d.png", k);
    const std::string path = (fs::path(data_dir) / "golden" / "images" / name).string();
    ASSIGN_OR_RETURN(Rgb8Image image, read_rgb8(path));
    if (image.height != kV4ImageSide || image.width != kV4ImageSide) {
      return data_loss(path + " is not 112x112");
    }
    pixels.insert(pixels.end(), image.pixels.begin(), image.pixels.end());
  }
  return pixels;
}

StatusOr<Rgb8Image> read_session_zip_image(const std::string& data_dir, const std::string& session,
                                           int number) {
  const std::string zip_path =
      (fs::path(data_dir) / "images" / ("images_" + session + ".zip")).string();
  char member[32];
  std::snprintf(member, sizeof member, "image%04d.jpg", number);
  ASSIGN_OR_RETURN(std::vector<std::uint8_t> bytes, read_zip_member(zip_path, member));

  auto image = decode_image(bytes);
  if (!image.ok()) return image.status().with_context(zip_path + ":" + member);
  return image;
}

StatusOr<GoldenGradients> read_golden_gradients(const std::string& data_dir) {
  GoldenGradients g;
  ASSIGN_OR_RETURN(g.models, read_models_list(data_dir));
  ASSIGN_OR_RETURN(g.grad_models, read_grad_models_list(data_dir));
  ASSIGN_OR_RETURN(const std::vector<std::uint8_t> all, read_golden_images(data_dir, 64));
  for (int k : kGoldenGradImages) {
    const auto begin = all.begin() + static_cast<std::ptrdiff_t>(k * kV4ImageBytes);
    g.raw.insert(g.raw.end(), begin, begin + static_cast<std::ptrdiff_t>(kV4ImageBytes));
  }
  const fs::path golden = fs::path(data_dir) / "golden";
  ASSIGN_OR_RETURN(const NpyArray grad, read_npy((golden / "grad_input_f64.npy").string()));
  if (grad.shape != std::vector<std::int64_t>{12, 4, 112, 112, 3}) {
    return data_loss("grad_input_f64.npy does not have shape (12, 4, 112, 112, 3)");
  }
  ASSIGN_OR_RETURN(const NpyArray resp, read_npy((golden / "grad_responses_f64.npy").string()));
  if (resp.shape != std::vector<std::int64_t>{12, 4}) {
    return data_loss("grad_responses_f64.npy does not have shape (12, 4)");
  }
  g.expected_grad = grad.to_double();
  g.expected_resp = resp.to_double();
  return g;
}

std::vector<std::uint8_t> synthetic_image(SyntheticImage kind, std::uint32_t seed) {
  std::vector<std::uint8_t> pixels(kV4ImageBytes);
  // mt19937's output sequence is fixed by the standard; the distributions are not, so bytes
  // are taken from the raw 32-bit outputs.
  std::mt19937 gen(seed);
  for (auto& p : pixels) {
    switch (kind) {
      case SyntheticImage::kUniformNoise:
        p = static_cast<std::uint8_t>(gen() >> 24);
        break;
      case SyntheticImage::kSynthStartNoise: {
        const double u = static_cast<double>(gen()) / 4294967296.0;
        p = static_cast<std::uint8_t>(std::lround(std::floor(128.0 + 50.0 * u)));
        break;
      }
      case SyntheticImage::kAllBlack:
        p = 0;
        break;
      case SyntheticImage::kAllWhite:
        p = 255;
        break;
    }
  }
  return pixels;
}

}  // namespace stimloop::test
