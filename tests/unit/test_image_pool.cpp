// Image pools against fixtures written at test time (directories and zips of PNGs), then the
// published images_190923.zip when ../shared/v4 is present.
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "server/sessions/image_pool.h"
#include "tests/support/keras_writer.h"
#include "tests/support/test_data.h"
#include "tests/support/v4_images.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using namespace stimloop;
using namespace stimloop::sessions;
using namespace stimloop::test;

namespace {

// An image whose pixels encode `tag`, so the test can tell which file ended up where.
Rgb8Image tagged_image(int tag, int height = 6, int width = 8) {
  Rgb8Image image{height, width, {}};
  image.pixels.assign(static_cast<std::size_t>(height) * width * 3, static_cast<std::uint8_t>(tag));
  return image;
}

std::vector<std::uint8_t> png(int tag, int height = 6, int width = 8) {
  auto bytes = encode_png(tagged_image(tag, height, width));
  REQUIRE(bytes.ok());
  return *bytes;
}

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  REQUIRE(write_bytes(path, bytes).ok());
}

// A 24-bit BMP of one colour written out by hand: a format the decoder reads but whose header
// the pool does not parse, so only the decoded size can be checked against the limits.
std::vector<std::uint8_t> bmp(int height, int width) {
  std::vector<std::uint8_t> b;
  auto u16 = [&](unsigned v) { b.push_back(v & 0xFF), b.push_back((v >> 8) & 0xFF); };
  auto u32 = [&](unsigned v) { u16(v & 0xFFFF), u16(v >> 16); };
  const unsigned row = (width * 3 + 3) / 4 * 4;
  b.push_back('B'), b.push_back('M');
  u32(54 + row * height), u32(0), u32(54);                    // file header
  u32(40), u32(width), u32(height), u16(1), u16(24), u32(0);  // info header
  u32(row * height), u32(2835), u32(2835), u32(0), u32(0);
  b.resize(b.size() + row * height, 77);
  return b;
}

std::vector<std::string> names(const ImagePool& pool) {
  std::vector<std::string> out;
  for (const auto& image : pool.images) out.push_back(image.name);
  return out;
}

}  // namespace

TEST_CASE("a directory pool is read in natural order, ignoring other files", "[pool]") {
  const std::string dir = scratch_dir("pool_dir");
  // Written out of order; tags record which file each is.
  write_file(dir + "/image10.png", png(10));
  write_file(dir + "/image2.PNG", png(2));
  write_file(dir + "/image1.jpg", png(1));  // PNG bytes under .jpg: decoded by content
  write_file(dir + "/Image3.JPEG", png(3));
  write_file(dir + "/notes.txt", to_bytes("not an image"));
  write_file(dir + "/image4.gif", to_bytes("not an image either"));
  fs::create_directories(dir + "/nested.png");  // a directory, even with an image's name
  write_file(dir + "/nested.png/image0.png", png(0));

  auto pool = load_image_pool("p", dir);
  REQUIRE(pool.ok());
  CHECK(pool->name == "p");
  CHECK(pool->path == dir);
  // "Image3" sorts before "image1": only digit runs compare by value, letters by byte.
  CHECK(names(*pool) ==
        std::vector<std::string>{"Image3.JPEG", "image1.jpg", "image2.PNG", "image10.png"});
  const std::vector<int> tags = {3, 1, 2, 10};
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const auto& image = pool->images[i].image;
    CHECK(image.height == 6);
    CHECK(image.width == 8);
    CHECK(image.pixels == tagged_image(tags[i]).pixels);
  }
}

TEST_CASE("natural order compares digit runs by value", "[pool]") {
  const std::string dir = scratch_dir("pool_natural");
  for (const char* name :
       {"a100.png", "a9.png", "a010.png", "a10.png", "b1.png", "a9x.png", "a.png"}) {
    write_file(dir + "/" + name, png(1));
  }
  auto pool = load_image_pool("p", dir);
  REQUIRE(pool.ok());
  CHECK(names(*pool) == std::vector<std::string>{"a.png", "a9.png", "a9x.png", "a10.png",
                                                 "a010.png", "a100.png", "b1.png"});
}

TEST_CASE("a zip pool takes images from any folder by base name", "[pool]") {
  const std::string dir = scratch_dir("pool_zip");
  const std::string zip = dir + "/images_test.zip";
  REQUIRE(write_zip(zip, {{"images_190923/", {}},
                          {"images_190923/image0010.png", png(10), true},
                          {"images_190923/image0002.png", png(2)},
                          {"images_190923/readme.txt", to_bytes("hello")},
                          {"__MACOSX/images_190923/._image0002.png", to_bytes("resource fork")},
                          {"other/deeper/image0003.jpeg", png(3)}})
              .ok());
  auto pool = load_image_pool("z", zip);
  REQUIRE(pool.ok());
  CHECK(names(*pool) ==
        std::vector<std::string>{"image0002.png", "image0003.jpeg", "image0010.png"});
  CHECK(pool->images[2].image.pixels == tagged_image(10).pixels);
}

TEST_CASE("duplicate base names in a zip are refused, naming both members", "[pool]") {
  const std::string zip = scratch_dir("pool_dup") + "/dup.zip";
  REQUIRE(write_zip(zip, {{"a/x.png", png(1)}, {"b/x.png", png(2)}}).ok());
  auto pool = load_image_pool("d", zip);
  REQUIRE_FALSE(pool.ok());
  CHECK(pool.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(pool.status().message(), Contains("a/x.png") && Contains("b/x.png"));
}

TEST_CASE("an undecodable image is named in the error", "[pool]") {
  const std::string dir = scratch_dir("pool_corrupt");
  write_file(dir + "/good.png", png(1));
  auto broken = png(2);
  broken.resize(broken.size() / 2);  // a PNG cut in half
  write_file(dir + "/broken_one.png", broken);
  auto pool = load_image_pool("c", dir);
  REQUIRE_FALSE(pool.ok());
  CHECK(pool.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(pool.status().message(), Contains("broken_one.png"));

  const std::string zip = dir + "/c.zip";
  REQUIRE(write_zip(zip, {{"x/good.png", png(1)}, {"x/garbage.jpg", to_bytes("garbage")}}).ok());
  pool = load_image_pool("c", zip);
  REQUIRE_FALSE(pool.ok());
  CHECK(pool.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(pool.status().message(), Contains("x/garbage.jpg"));
}

TEST_CASE("images of different sizes are refused at the first mismatch", "[pool]") {
  const std::string dir = scratch_dir("pool_sizes");
  write_file(dir + "/img1.png", png(1));
  write_file(dir + "/img2.png", png(2, 7, 8));
  write_file(dir + "/img3.png", png(3, 9, 9));
  auto pool = load_image_pool("s", dir);
  REQUIRE_FALSE(pool.ok());
  CHECK(pool.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(pool.status().message(), Contains("img2.png") && Contains("8x7"));
  CHECK_THAT(pool.status().message(), !Contains("img3.png"));
}

TEST_CASE("missing, empty and non-pool paths are refused with the right code", "[pool]") {
  const std::string dir = scratch_dir("pool_paths");
  auto missing = load_image_pool("m", dir + "/nowhere");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK_THAT(missing.status().message(), Contains("nowhere"));

  fs::create_directories(dir + "/empty");
  write_file(dir + "/empty/readme.txt", to_bytes("no images here"));
  auto empty = load_image_pool("e", dir + "/empty");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.status().code() == StatusCode::kInvalidArgument);

  REQUIRE(write_zip(dir + "/empty.zip", {{"readme.txt", to_bytes("no images")}}).ok());
  auto empty_zip = load_image_pool("e", dir + "/empty.zip");
  REQUIRE_FALSE(empty_zip.ok());
  CHECK(empty_zip.status().code() == StatusCode::kInvalidArgument);

  write_file(dir + "/list.txt", to_bytes("image1.png\nimage2.png\n"));
  auto text = load_image_pool("t", dir + "/list.txt");
  REQUIRE_FALSE(text.ok());
  CHECK(text.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(text.status().message(), Contains("list.txt"));

  // Echoed names are truncated: a hostile name does not flood the log.
  const std::string long_name(5000, 'q');
  auto long_missing = load_image_pool("m", dir + "/" + long_name);
  REQUIRE_FALSE(long_missing.ok());
  CHECK(long_missing.status().message().size() < 1000);
}

TEST_CASE("pool limits are enforced before decoding", "[pool]") {
  const std::string dir = scratch_dir("pool_limits");
  for (int i = 1; i <= 3; ++i) write_file(dir + "/i" + std::to_string(i) + ".png", png(i));

  auto count = load_image_pool("l", dir, PoolLimits{2, 16 << 20, 4096});
  REQUIRE_FALSE(count.ok());
  CHECK(count.status().code() == StatusCode::kResourceExhausted);
  CHECK(load_image_pool("l", dir, PoolLimits{3, 16 << 20, 4096}).ok());

  // File sizes may differ by a byte or two: below the smallest, the first file read (i1.png)
  // is refused; at the largest, all load.
  std::int64_t smallest = 1 << 30, largest = 0;
  for (int i = 1; i <= 3; ++i) {
    smallest = std::min<std::int64_t>(smallest, static_cast<std::int64_t>(png(i).size()));
    largest = std::max<std::int64_t>(largest, static_cast<std::int64_t>(png(i).size()));
  }
  auto bytes = load_image_pool("l", dir, PoolLimits{10, smallest - 1, 4096});
  REQUIRE_FALSE(bytes.ok());
  CHECK(bytes.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(bytes.status().message(), Contains("i1.png"));
  CHECK(load_image_pool("l", dir, PoolLimits{10, largest, 4096}).ok());

  const std::string zip = dir + "/l.zip";
  const auto one = png(1);
  const auto one_size = static_cast<std::int64_t>(one.size());
  REQUIRE(write_zip(zip, {{"f/i1.png", one, true}, {"f/i2.png", one}}).ok());
  auto member = load_image_pool("l", zip, PoolLimits{10, one_size - 1, 4096});
  REQUIRE_FALSE(member.ok());
  CHECK(member.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(member.status().message(), Contains("f/i1.png"));
  CHECK(load_image_pool("l", zip, PoolLimits{10, one_size, 4096}).ok());
  auto zip_count = load_image_pool("l", zip, PoolLimits{1, 16 << 20, 4096});
  REQUIRE_FALSE(zip_count.ok());
  CHECK(zip_count.status().code() == StatusCode::kResourceExhausted);

  // The side limit, from the PNG header (8 wide) ...
  auto side = load_image_pool("l", dir, PoolLimits{10, 16 << 20, 7});
  REQUIRE_FALSE(side.ok());
  CHECK(side.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(side.status().message(), Contains("8x6"));
  CHECK(load_image_pool("l", dir, PoolLimits{10, 16 << 20, 8}).ok());
  // ... from the decoded image when the header is not one the pool parses ...
  const std::string other = scratch_dir("pool_bmp");
  write_file(other + "/wide.png", bmp(6, 9));
  auto decoded = load_image_pool("b", other, PoolLimits{10, 16 << 20, 8});
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(decoded.status().message(), Contains("wide.png"));
  auto fits = load_image_pool("b", other, PoolLimits{10, 16 << 20, 9});
  REQUIRE(fits.ok());
  CHECK(fits->images[0].image.width == 9);

  // ... and from headers alone: a PNG and a JPEG claiming 60000 x 50000 pixels would need
  // gigabytes decoded, and are refused before the decoder sees them.
  const std::string huge = scratch_dir("pool_huge");
  auto header = png(1);
  header[16] = 0, header[17] = 0, header[18] = 0xEA, header[19] = 0x60;  // width 60000
  header[20] = 0, header[21] = 0, header[22] = 0xC3, header[23] = 0x50;  // height 50000
  write_file(huge + "/huge.png", header);
  auto huge_png = load_image_pool("h", huge);
  REQUIRE_FALSE(huge_png.ok());
  CHECK(huge_png.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(huge_png.status().message(), Contains("huge.png") && Contains("60000x50000"));
  fs::remove(huge + "/huge.png");
  // SOI, an APP0 segment to skip, then SOF0: precision 8, height 50000, width 60000.
  write_file(huge + "/huge.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00,
                                  0x11, 0x08, 0xC3, 0x50, 0xEA, 0x60, 0x03});
  auto huge_jpg = load_image_pool("h", huge);
  REQUIRE_FALSE(huge_jpg.ok());
  CHECK(huge_jpg.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(huge_jpg.status().message(), Contains("huge.jpg") && Contains("60000x50000"));
}

TEST_CASE("unreadable files are PERMISSION_DENIED, naming them", "[pool]") {
  const std::string dir = scratch_dir("pool_permission");
  write_file(dir + "/ok.png", png(1));
  write_file(dir + "/secret.png", png(2));
  REQUIRE(::chmod((dir + "/secret.png").c_str(), 0) == 0);
  if (std::FILE* f = std::fopen((dir + "/secret.png").c_str(), "rb")) {
    std::fclose(f);
    // Root reads mode-000 files; `setpriv --bounding-set=-dac_override,-dac_read_search` runs the
    // test without that privilege.
    std::printf("SKIPPED (pool permission checks): this process can read mode-000 files\n");
    return;
  }
  auto pool = load_image_pool("p", dir);
  REQUIRE_FALSE(pool.ok());
  CHECK(pool.status().code() == StatusCode::kPermissionDenied);
  CHECK_THAT(pool.status().message(), Contains("secret.png"));

  const std::string zip = scratch_dir("pool_permission_zip") + "/locked.zip";
  REQUIRE(write_zip(zip, {{"a.png", png(1)}}).ok());
  REQUIRE(::chmod(zip.c_str(), 0) == 0);
  auto locked = load_image_pool("p", zip);
  REQUIRE_FALSE(locked.ok());
  CHECK(locked.status().code() == StatusCode::kPermissionDenied);
  CHECK_THAT(locked.status().message(), Contains("locked.zip"));

  const std::string closed = scratch_dir("pool_permission_dir");
  write_file(closed + "/a.png", png(1));
  REQUIRE(::chmod(closed.c_str(), 0) == 0);
  auto listing = load_image_pool("p", closed);
  ::chmod(closed.c_str(), 0755);  // so the next run's scratch_dir can remove it
  REQUIRE_FALSE(listing.ok());
  CHECK(listing.status().code() == StatusCode::kPermissionDenied);
  CHECK_THAT(listing.status().message(), Contains("pool_permission_dir"));
}

TEST_CASE("the published images_190923.zip loads as 1200 images of 112x112", "[pool]") {
  const auto data = v4_data_dir();
  if (!data) {
    print_skip("images_190923.zip pool");
    return;
  }
  const std::string zip = *data + "/images/images_190923.zip";
  auto pool = load_image_pool("190923", zip);
  REQUIRE(pool.ok());
  REQUIRE(pool->images.size() == 1200);
  for (int i = 0; i < 1200; ++i) {
    char expected[32];
    std::snprintf(expected, sizeof expected, "image%04d.jpg", i + 1);
    const auto& image = pool->images[i];
    INFO(expected);
    REQUIRE(image.name == expected);
    REQUIRE(image.image.height == 112);
    REQUIRE(image.image.width == 112);
  }
  // The pixels are those the support library decodes for the same member.
  for (int number : {1, 600, 1200}) {
    auto reference = read_session_zip_image(*data, "190923", number);
    REQUIRE(reference.ok());
    CHECK(pool->images[number - 1].image.pixels == reference->pixels);
  }
  // The JPEG header is read before decoding too.
  auto limited = load_image_pool("190923", zip, PoolLimits{20000, 16 << 20, 111});
  REQUIRE_FALSE(limited.ok());
  CHECK(limited.status().code() == StatusCode::kResourceExhausted);
  CHECK_THAT(limited.status().message(), Contains("image0001.jpg") && Contains("112x112"));
}
