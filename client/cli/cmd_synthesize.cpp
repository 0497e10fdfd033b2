// `stimloop synthesize`: preferred, suppressive, population, channel and adversarial stimuli.
// Flag spellings are a contract other scripts rely on (see the synthesis issue and the README).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "client/cli/commands.h"
#include "client/cli/remote.h"
#include "client/cli/synthesis_job.h"
#include "common/file_checks.h"
#include "common/npy.h"
#include "common/sha256.h"

namespace stimloop::cli {
namespace {

struct SynthesizeOptions {
  std::vector<std::string> models;
  std::string objective, method, mode = "one-hot", norm = "linf", direction, targets,
                                 init = "noise";
  std::string out, target_responses_file;
  bool json = false, resize = false, grayscale = false, no_progress = false;
  synthesis::SynthesisRequest request;
  double target_response = std::numeric_limits<double>::quiet_NaN();
  std::optional<int> steps;
  std::optional<double> step_size, gradient_blur;
};

StatusOr<std::vector<int>> parse_index_list(const std::string& text) {
  std::vector<int> values;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      std::size_t used = 0;
      values.push_back(std::stoi(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      return invalid_argument("--targets: '" + item + "' is not an integer index");
    }
  }
  return values;
}

// A response vector: .npy (any float dtype), or text/JSON with numbers separated by commas,
// whitespace or brackets.
StatusOr<std::vector<double>> read_response_vector(const std::string& path) {
  if (path.size() > 4 && path.substr(path.size() - 4) == ".npy") {
    ASSIGN_OR_RETURN(NpyArray array, read_npy(path));
    return array.to_double();
  }
  std::ifstream in(path);
  if (!in) return not_found("--target-responses: cannot open " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : text) {
    if (c == ',' || c == '[' || c == ']') c = ' ';
  }
  std::vector<double> values;
  std::stringstream ss(text);
  for (std::string item; ss >> item;) {
    try {
      values.push_back(std::stod(item));
    } catch (const std::exception&) {
      return invalid_argument("--target-responses: '" + item + "' is not a number");
    }
  }
  return values;
}

// Fills opt.request from the flags; model-independent checks happen in synthesis::validate.
Status build_request(SynthesizeOptions& opt, const Model& first_model) {
  synthesis::SynthesisRequest& r = opt.request;
  ASSIGN_OR_RETURN(r.objective, synthesis::parse_objective(opt.objective));
  using synthesis::MethodKind;
  using synthesis::ObjectiveKind;
  if (opt.method.empty()) {
    r.method = r.objective == ObjectiveKind::kAdversarial ? MethodKind::kPgd
               : (r.objective == ObjectiveKind::kMax || r.objective == ObjectiveKind::kMin)
                   ? MethodKind::kCowley2026
                   : MethodKind::kAdam;
  } else {
    ASSIGN_OR_RETURN(r.method, synthesis::parse_method(opt.method));
  }
  ASSIGN_OR_RETURN(r.mode, synthesis::parse_population_mode(opt.mode));
  ASSIGN_OR_RETURN(r.norm, synthesis::parse_norm(opt.norm));
  if (!opt.targets.empty()) {
    ASSIGN_OR_RETURN(r.targets, parse_index_list(opt.targets));
  }
  if (!opt.target_responses_file.empty()) {
    ASSIGN_OR_RETURN(r.target_responses, read_response_vector(opt.target_responses_file));
  }
  if (r.objective == ObjectiveKind::kAdversarial) {
    const bool has_target = !std::isnan(opt.target_response);
    if (has_target && !opt.direction.empty()) {
      return invalid_argument("give either --direction or --target-response, not both");
    }
    if (has_target) {
      r.direction = synthesis::Direction::kTarget;
      r.target_response = opt.target_response;
    } else {
      ASSIGN_OR_RETURN(r.direction,
                       synthesis::parse_direction(opt.direction.empty() ? "up" : opt.direction));
    }
  } else if (!opt.direction.empty() || !std::isnan(opt.target_response)) {
    return invalid_argument("--direction and --target-response are for --objective adversarial");
  }
  const auto defaults = synthesis::method_defaults(r.method, r.norm, r.epsilon);
  r.steps = opt.steps.value_or(defaults.steps);
  r.step_size = opt.step_size.value_or(defaults.step_size);
  r.gradient_blur_sigma = opt.gradient_blur.value_or(1.0);
  r.grayscale = opt.grayscale;
  if (opt.init == "noise") {
    r.init = synthesis::InitKind::kNoise;
  } else if (opt.init == "gray") {
    r.init = synthesis::InitKind::kGray;
  } else {
    r.init = synthesis::InitKind::kImage;
    r.init_image = opt.init;
    ASSIGN_OR_RETURN(LoadedImages image, load_images({opt.init}, first_model, opt.resize));
    r.init_pixels = image.raw;
    r.init_image_sha256 = sha256_hex(image.raw);
  }
  if (opt.out.size() < 5 || opt.out.substr(opt.out.size() - 4) != ".png") {
    return invalid_argument("--out must name a .png file");
  }
  return synthesis::validate(r);
}

// PATH.png, PATH_k.png with --count > 1, PATH_<model>[_k].png with several models.
std::string output_png(const SynthesizeOptions& opt, std::size_t model_count,
                       const std::string& model_id, int index) {
  std::string suffix = model_count > 1 ? model_id : "";
  if (opt.request.count > 1) suffix += (suffix.empty() ? "" : "_") + std::to_string(index);
  return with_suffix(opt.out, suffix);
}

// Every PNG and record can be written: checked before the synthesis spends any time.
Status check_outputs(const SynthesizeOptions& opt,
                     const std::vector<std::shared_ptr<const Model>>& models) {
  for (const auto& model : models) {
    for (int k = 0; k < opt.request.count; ++k) {
      const std::string png = output_png(opt, models.size(), model->info.id, k);
      RETURN_IF_ERROR(check_writable_file(png, "--out"));
      RETURN_IF_ERROR(check_writable_file(record_path(png), "--out"));
    }
  }
  return Status::Ok();
}

int run_synthesize(const CommonOptions& common, SynthesizeOptions& opt) {
  std::unique_ptr<client::StimloopClient> client;
  std::unique_ptr<ModelRepository> repo;
  if (common.is_remote()) {
    auto connected = connect_remote(common);
    if (!connected.ok()) return report_error(connected.status());
    client = std::move(connected).value();
  } else {
    auto opened = open_repository(common);
    if (!opened.ok()) return report_error(opened.status());
    repo = std::move(opened).value();
  }
  std::vector<std::shared_ptr<const Model>> models;
  for (const auto& spec : opt.models) {
    auto model = client ? remote_model(*client, spec) : resolve_model(spec, *repo);
    if (!model.ok()) return report_error(model.status());
    models.push_back(*model);
  }
  if (Status s = build_request(opt, *models.front()); !s.ok()) return report_error(s);
  if (Status s = check_outputs(opt, models); !s.ok()) return report_error(s);
  std::unique_ptr<Backend> backend;
  if (!client) {
    auto made = make_backend(common);
    if (!made.ok()) return report_error(made.status());
    backend = std::move(made).value();
  }

  nlohmann::json records = nlohmann::json::array();
  for (const auto& model : models) {
    const bool progress = !opt.no_progress && !opt.json;
    auto outputs = client ? remote_synthesis_job(*client, common, opt.request, *model, progress)
                          : run_synthesis_job(opt.request, *model, *backend, progress);
    if (!outputs.ok()) return report_error(outputs.status().with_context(model->info.id));
    for (auto& out : *outputs) {
      const std::string png = output_png(opt, models.size(), model->info.id, out.stimulus.index);
      if (Status s = write_stimulus_files(png, out); !s.ok()) {
        return report_error(s.with_context("--out"));
      }
      out.record["png"] = png;
      records.push_back(out.record);
      if (!opt.json) {
        std::printf("%s: %s response %.6g (8-bit image), %d steps, %s%s\n", png.c_str(),
                    model->info.id.c_str(), out.stimulus.response,
                    out.record["steps_done"].get<int>(),
                    out.record["stop_reason"].get<std::string>().c_str(),
                    model->info.demo ? "  [DEMO: built-in, not a V4 neuron]" : "");
      }
    }
  }
  if (opt.json) std::cout << records.dump(2) << "\n";
  return kExitOk;
}

}  // namespace

Command add_synthesize_command(CLI::App& app, const CommonOptions& common) {
  auto* sub = app.add_subcommand("synthesize", "Synthesize stimuli by gradient-based optimization");
  auto opt = std::make_shared<SynthesizeOptions>();
  auto& r = opt->request;
  sub->add_option("--model", opt->models, "Model id, 'demo', or .keras path (repeatable)")
      ->required();
  sub->add_option("--objective", opt->objective, "max|min|population|channel|adversarial")
      ->required();
  sub->add_option("--method", opt->method,
                  "cowley2026|adam|pgd (default: cowley2026 for max/min, pgd for adversarial, "
                  "adam otherwise)");
  sub->add_option("--output-index", r.output_index, "Output K (max, min, adversarial)")
      ->capture_default_str();
  sub->add_option("--steps", opt->steps, "Optimization steps (method default)");
  sub->add_option("--step-size", opt->step_size, "Step size in pixel levels (method default)");
  sub->add_option("--seed", r.seed, "Seed of stimulus 0 (stimulus k uses seed + k)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_option("--count", r.count, "Stimuli in the batch")->capture_default_str();
  sub->add_option("--out", opt->out, "Output PNG path (PATH_k.png with --count > 1)")->required();
  sub->add_flag("--json", opt->json, "Print the records as a JSON array");
  sub->add_option("--targets", opt->targets, "Population: target output indices I,J,...");
  sub->add_option("--mode", opt->mode, "Population: one-hot|contrast|match")->capture_default_str();
  sub->add_option("--target-responses", opt->target_responses_file,
                  "Population match: response vector (.npy, JSON or text)");
  sub->add_option("--layer", r.layer, "Channel: Keras layer index (layer0_conv = 0)");
  sub->add_option("--channel", r.channel, "Channel: channel index in that layer");
  sub->add_option("--init", opt->init, "noise|gray|IMAGE (adversarial: the image to perturb)")
      ->capture_default_str();
  sub->add_flag("--resize", opt->resize, "Rescale an --init image of another size");
  sub->add_option("--epsilon", r.epsilon, "Adversarial: budget in pixel levels (0-255)")
      ->capture_default_str();
  sub->add_option("--norm", opt->norm, "Adversarial: linf|l2")->capture_default_str();
  sub->add_option("--direction", opt->direction, "Adversarial: up|down (default up)");
  sub->add_option("--target-response", opt->target_response, "Adversarial: drive output to R");
  sub->add_flag("--grayscale", opt->grayscale, "Gray stimuli");
  sub->add_option("--deadline-ms", r.deadline_ms, "Stop by then with the best so far (0 = none)");
  sub->add_option("--display-size", r.display_size, "Upscale the PNG (nearest) to N x N");
  sub->add_option("--trajectory-every", r.trajectory_every,
                  "Record the best response every N "
                  "steps")
      ->capture_default_str();
  sub->add_option("--gradient-blur", opt->gradient_blur, "Gradient blur sigma (default 1)");
  sub->add_option("--image-blur-every", r.image_blur_every, "cowley2026: blur image every N steps")
      ->capture_default_str();
  sub->add_option("--image-blur-sigma", r.image_blur_sigma, "cowley2026: image blur sigma")
      ->capture_default_str();
  sub->add_option("--beta1", r.beta1, "Adam beta1")->capture_default_str();
  sub->add_option("--beta2", r.beta2, "Adam beta2")->capture_default_str();
  sub->add_option("--jitter", r.jitter, "Adam: random shifts up to N pixels")
      ->capture_default_str();
  sub->add_option("--tv", r.tv_weight, "Adam: total-variation penalty weight")
      ->capture_default_str();
  sub->add_option("--l2", r.l2_weight, "Adam: L2 penalty weight")->capture_default_str();
  sub->add_option("--rms-contrast", r.rms_contrast, "Adam: fixed RMS contrast (pixel levels)")
      ->capture_default_str();
  sub->add_option("--diversity", r.diversity_weight, "Batch diversity penalty weight")
      ->capture_default_str();
  sub->add_flag("--no-progress", opt->no_progress, "No progress line on the terminal");
  return {sub, [&common, opt] { return run_synthesize(common, *opt); }};
}

}  // namespace stimloop::cli
