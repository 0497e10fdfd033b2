// `stimloop test-image`: writes a synthetic stimulus (grating, noise or gray) so the quick start
// and smoke tests need no downloaded images.
#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>

#include "client/cli/commands.h"
#include "common/file_checks.h"

namespace stimloop::cli {
namespace {

struct TestImageOptions {
  std::string out;
  std::string kind = "grating";
  double orientation_deg = 0.0;
  double period_px = 8.0;
  int size = 112;
  unsigned seed = 0;
};

int run_test_image(const TestImageOptions& opt) {
  if (opt.size < 1 || opt.size > 4096) {
    return report_error(invalid_argument("--size must be between 1 and 4096"));
  }
  if (!(opt.period_px > 0.5 && opt.period_px < 1e6)) {
    return report_error(invalid_argument("--period must be between 0.5 and 1e6 pixels"));
  }
  Rgb8Image image;
  image.height = image.width = opt.size;
  image.pixels.resize(static_cast<std::size_t>(opt.size) * opt.size * 3);
  std::mt19937 rng(opt.seed);
  std::uniform_int_distribution<int> byte(0, 255);
  const double theta = opt.orientation_deg * std::numbers::pi / 180.0;
  for (int y = 0; y < opt.size; ++y) {
    for (int x = 0; x < opt.size; ++x) {
      for (int c = 0; c < 3; ++c) {
        double v = 128.0;
        if (opt.kind == "grating") {
          // Orientation 0 = vertical bars (luminance varies along x).
          const double u = x * std::cos(theta) + y * std::sin(theta);
          v = 128.0 + 127.0 * std::cos(2 * std::numbers::pi * u / opt.period_px);
        } else if (opt.kind == "noise") {
          v = byte(rng);
        }
        image.pixels[(static_cast<std::size_t>(y) * opt.size + x) * 3 + c] =
            static_cast<std::uint8_t>(std::lround(v));
      }
    }
  }
  if (Status s = check_writable_file(opt.out, "--out"); !s.ok()) return report_error(s);
  if (Status s = write_png(opt.out, image); !s.ok()) return report_error(s.with_context("--out"));
  std::printf("wrote %s (%dx%d %s)\n", opt.out.c_str(), opt.size, opt.size, opt.kind.c_str());
  return kExitOk;
}

}  // namespace

Command add_test_image_command(CLI::App& app, const CommonOptions&) {
  auto* sub = app.add_subcommand("test-image", "Write a synthetic test image (PNG)");
  auto opt = std::make_shared<TestImageOptions>();
  sub->add_option("--out", opt->out, "Output PNG file")->required();
  sub->add_option("--kind", opt->kind, "grating, noise or gray")
      ->check(CLI::IsMember({"grating", "noise", "gray"}))
      ->capture_default_str();
  sub->add_option("--orientation", opt->orientation_deg, "Grating orientation, degrees")
      ->capture_default_str();
  sub->add_option("--period", opt->period_px, "Grating period, pixels")->capture_default_str();
  sub->add_option("--size", opt->size, "Width and height, pixels")->capture_default_str();
  sub->add_option("--seed", opt->seed, "Seed for noise")->capture_default_str();
  return {sub, [opt] { return run_test_image(*opt); }};
}

}  // namespace stimloop::cli
