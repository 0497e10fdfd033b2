#include <cstdio>
#include <iostream>

#include "client/cli/commands.h"
#include "common/file_checks.h"
#include "common/finite.h"
#include "common/npy.h"

namespace stimloop::cli {
namespace {

struct GradientOptions {
  std::string model;
  std::string image;
  std::string out;
  int output_index = 0;
  bool resize = false;
  bool json = false;
};

int run_gradient(const CommonOptions& common, const GradientOptions& opt) {
  auto repo = open_repository(common);
  if (!repo.ok()) return report_error(repo.status());
  auto model = resolve_model(opt.model, **repo);
  if (!model.ok()) return report_error(model.status());
  const ModelInfo& info = (*model)->info;
  if (opt.output_index < 0 || opt.output_index >= info.num_outputs) {
    return report_error(out_of_range("--output-index " + std::to_string(opt.output_index) +
                                     " is outside 0.." + std::to_string(info.num_outputs - 1) +
                                     " for model " + info.id));
  }
  if (Status s = check_writable_file(opt.out, "--out"); !s.ok()) return report_error(s);
  auto images = load_images({opt.image}, **model, opt.resize);
  if (!images.ok()) return report_error(images.status());
  auto backend = make_backend(common);
  if (!backend.ok()) return report_error(backend.status());
  auto resident = (*backend)->upload((*model)->network);
  if (!resident.ok()) return report_error(resident.status());

  std::vector<float> seed(info.num_outputs, 0.0f), outputs(info.num_outputs);
  seed[opt.output_index] = 1.0f;
  std::vector<float> grad(images->input.size());
  Status computed = (*resident)->input_gradient(images->input, 1, seed, outputs, grad);
  if (computed.ok()) computed = check_finite<float>(outputs, "model " + info.id + ": responses");
  if (computed.ok()) computed = check_finite<float>(grad, "model " + info.id + ": gradient");
  if (!computed.ok()) return report_error(computed);
  // Re-centering is a shift, so d/d(re-centered input) is d/d(raw pixel value).
  if (Status s = write_npy_float32(opt.out, {info.in_h, info.in_w, info.in_c}, grad.data());
      !s.ok()) {
    return report_error(s);
  }
  const float response = outputs[opt.output_index];
  if (opt.json) {
    nlohmann::json out = {{"model", info.id},
                          {"sha256", info.sha256},
                          {"image", opt.image},
                          {"output_index", opt.output_index},
                          {"response", response},
                          {"gradient", opt.out},
                          {"shape", {info.in_h, info.in_w, info.in_c}},
                          {"demo", info.demo},
                          {"backend", (*backend)->name()}};
    std::cout << out.dump() << "\n";
  } else {
    std::printf(
        "%s: response %d of %s = %.6g; wrote d(response)/d(pixel) (%dx%dx%d float32) to "
        "%s%s\n",
        opt.image.c_str(), opt.output_index, info.id.c_str(), response, info.in_h, info.in_w,
        info.in_c, opt.out.c_str(), info.demo ? "  [DEMO: built-in, not a V4 neuron]" : "");
  }
  return kExitOk;
}

}  // namespace

Command add_gradient_command(CLI::App& app, const CommonOptions& common) {
  auto* sub = app.add_subcommand(
      "gradient", "d(response)/d(pixel value) of one image, written as float32 .npy (H, W, 3)");
  auto opt = std::make_shared<GradientOptions>();
  sub->add_option("--model", opt->model, "Model id, 'demo', or a .keras path")->required();
  sub->add_option("--image", opt->image, "Image file (PNG or JPEG)")->required();
  sub->add_option("--out", opt->out, "Output .npy file")->required();
  sub->add_option("--output-index", opt->output_index,
                  "Which output to differentiate (shared models have 219)")
      ->capture_default_str();
  sub->add_flag("--resize", opt->resize, "Rescale an image of another size to the model's input");
  sub->add_flag("--json", opt->json, "Print a JSON summary");
  return {sub, [&common, opt] { return run_gradient(common, *opt); }};
}

}  // namespace stimloop::cli
