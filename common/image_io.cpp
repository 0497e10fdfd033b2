#include "common/image_io.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstring>

#include "common/durable_file.h"
#include "common/file_checks.h"

namespace stimloop {
namespace {

Rgb8Image from_bgr(const cv::Mat& bgr) {
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  Rgb8Image image;
  image.height = rgb.rows;
  image.width = rgb.cols;
  image.pixels.resize(static_cast<std::size_t>(rgb.rows) * rgb.cols * 3);
  for (int y = 0; y < rgb.rows; ++y) {
    std::memcpy(image.pixels.data() + static_cast<std::size_t>(y) * rgb.cols * 3, rgb.ptr(y),
                static_cast<std::size_t>(rgb.cols) * 3);
  }
  return image;
}

}  // namespace

StatusOr<Rgb8Image> read_rgb8(const std::string& path) {
  RETURN_IF_ERROR(check_readable_file(path, "image"));
  cv::Mat bgr;
  try {
    bgr = cv::imread(path, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return invalid_argument("cannot decode image " + path + ": " + e.what());
  }
  if (bgr.empty()) return invalid_argument("cannot decode image " + path + " (not PNG/JPEG?)");
  return from_bgr(bgr);
}

Rgb8Image resize_rgb8(const Rgb8Image& image, int height, int width) {
  cv::Mat src(image.height, image.width, CV_8UC3, const_cast<std::uint8_t*>(image.pixels.data()));
  cv::Mat dst;
  const bool shrinking = height < image.height || width < image.width;
  cv::resize(src, dst, cv::Size(width, height), 0, 0,
             shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
  Rgb8Image out;
  out.height = height;
  out.width = width;
  out.pixels.assign(dst.data, dst.data + dst.total() * 3);
  return out;
}

StatusOr<std::vector<std::uint8_t>> encode_png(const Rgb8Image& image) {
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<std::uint8_t*>(image.pixels.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<std::uint8_t> bytes;
  try {
    if (!cv::imencode(".png", bgr, bytes)) return internal_error("PNG encoding failed");
  } catch (const cv::Exception& e) {
    return internal_error(std::string("PNG encoding failed: ") + e.what());
  }
  return bytes;
}

StatusOr<Rgb8Image> decode_image(const std::vector<std::uint8_t>& bytes) {
  cv::Mat bgr;
  try {
    bgr = cv::imdecode(bytes, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return invalid_argument(std::string("cannot decode image: ") + e.what());
  }
  if (bgr.empty()) return invalid_argument("cannot decode image (not PNG/JPEG?)");
  return from_bgr(bgr);
}

Rgb8Image upscale_nearest(const Rgb8Image& image, int height, int width) {
  Rgb8Image out;
  out.height = height;
  out.width = width;
  out.pixels.resize(static_cast<std::size_t>(height) * width * 3);
  for (int y = 0; y < height; ++y) {
    const int sy = static_cast<int>(static_cast<long long>(y) * image.height / height);
    for (int x = 0; x < width; ++x) {
      const int sx = static_cast<int>(static_cast<long long>(x) * image.width / width);
      for (int c = 0; c < 3; ++c) {
        out.pixels[(static_cast<std::size_t>(y) * width + x) * 3 + c] =
            image.pixels[(static_cast<std::size_t>(sy) * image.width + sx) * 3 + c];
      }
    }
  }
  return out;
}

Status write_png(const std::string& path, const Rgb8Image& image) {
  ASSIGN_OR_RETURN(const std::vector<std::uint8_t> png, encode_png(image));
  return write_file_atomically(path, png);
}

}  // namespace stimloop
