// stimloop-bench-synthesis: the synthesis quality bars, measured on the published models with the
// synthesis library exactly as the CLI drives it (SynthesisRun::create + run_synthesis + finish),
// on the CPU or the CUDA backend. Prints a table per section and a PASS/FAIL line per bar (or, with
// --json, one JSON document). Exit 0 even when a bar fails (this is a benchmark, not a test);
// non-zero only when something could not be run.
//
// Sections (--only picks some):
//   cowley       the default max objective (cowley2026, 1000 steps, step 10) for each model of
//                golden/synthesis.json, 8 seeds in ONE batched run (count 8, seeds S..S+7).
//                Bars: median over seeds of the 8-bit response >= 0.95 x the reference median;
//                every best 8-bit response above max_natural (the model's best of its 1200
//                natural images).
//   adversarial  pgd, L-inf epsilon 4 (the method's default steps and step size), up and down,
//                from natural images of each model's own session. Bars: up raises the response
//                by >= 1 std for >= 90 % of (model, image) pairs; down lowers it by >= 1 std for
//                >= 75 %; every 8-bit result within epsilon of its original, pixel by pixel.
//   population   one-hot on shared_compact_model_50filters (adam, its default step size, 300
//                steps) for targets spread over all outputs. Bar: the target is the argmax of all
//                outputs for >= 90 % of targets.
//   replay       a cowley run recomputed from its JSON record (make_record -> parse_record, as
//                `stimloop replay` does). Bar: every 8-bit pixel of every stimulus identical.
//
// No OpenCV here (the binary is carried to GPU machines that have none), so natural images come
// from golden/images_raw_uint8.npy: images 0-31 are the first 32 of session 190923, 32-63 the
// first 32 of session 210225, hence the adversarial models are models of those two sessions.
//
// --quick is a smoke run (2 models spread over synthesis.json, 2 seeds, 100 steps, 4 images, 4
// targets): its verdicts are printed with "(quick)" and say little (100 steps are far from the
// reference's 1000). Overrides such as --models or --steps mark the verdicts "(partial)". Wall
// times per run and per section are printed; progress goes to stderr.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/npy.h"
#include "common/sha256.h"
#include "bench/v4_data.h"
#include "kernels/backend.h"
#include "kernels/device_info.h"
#include "models/keras_import.h"
#include "models/preprocess.h"
#include "server/synthesis/record.h"
#include "server/synthesis/request.h"
#include "server/synthesis/synthesis_run.h"

namespace fs = std::filesystem;
namespace syn = stimloop::synthesis;
using nlohmann::json;
using stimloop::Backend;
using stimloop::Model;
using stimloop::ResidentNetwork;
using stimloop::Status;
using stimloop::StatusOr;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
  std::string backend = "cpu";
  bool quick = false;
  bool json = false;
  std::vector<std::string> only;
  std::uint64_t seed = 0;
  // Overrides (-1: the section's default, which --quick shrinks).
  int models = -1;            // cowley and adversarial: how many models
  int seeds = -1;             // cowley: stimuli per batch
  int steps = -1;             // cowley (and replay): steps
  int images = -1;            // adversarial: images per model
  int targets = -1;           // population: how many targets
  int population_steps = -1;  // population: steps
  std::string natural_std;    // adversarial: JSON {model id: std over 1200 natural images}
};

// Full-run defaults and the --quick smoke run.
struct Sizes {
  int cowley_models, seeds, steps, adversarial_models, images, targets, population_steps;
};
constexpr Sizes kFull{6, 8, 1000, 6, 16, 20, 300};
constexpr Sizes kQuick{2, 2, 100, 2, 4, 4, 100};

// A bar and its verdict. `mode` is "" for the bar as the issue states it, "quick" for a --quick
// run, "partial" when an override shrank or changed the section; such verdicts are indicative.
struct Bar {
  std::string section, name;
  double value = 0, threshold = 0;
  std::string comparison;  // ">=", "<=", ">", "=="
  bool pass = false;
  std::string mode;
  std::string detail;
};

struct Context {
  Options opt;
  Sizes sizes{};
  std::string data;
  std::unique_ptr<Backend> backend;
  std::vector<Bar> bars;
  json sections = json::object();
  std::map<std::string, std::shared_ptr<const Model>> models;
  // models_list.txt: file name -> (row, session)
  std::map<std::string, std::pair<int, std::string>> rows;
  // The first cowley run, kept for the replay section.
  std::optional<syn::SynthesisRequest> cowley_request;
  std::string cowley_model;
  std::optional<syn::SynthesisResult> cowley_result;
  bool changed(int override_value, int full_value) const {
    return override_value >= 0 && override_value != full_value;
  }
};

// Progress on stderr, so that --json output on stdout stays clean.
template <typename... Args>
void note(const char* fmt, Args... args) {
  std::fprintf(stderr, fmt, args...);
  std::fflush(stderr);
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Sample standard deviation (n - 1).
double sample_std(const std::vector<double>& v) {
  if (v.size() < 2) return NAN;
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  double ss = 0.0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / double(v.size() - 1));
}

std::string read_first_line(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return {};
}

json machine_info(const Context& ctx) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  json m = {{"host", host},
            {"cpu", read_first_line("/proc/cpuinfo", "model name")},
            {"hardware_threads", std::thread::hardware_concurrency()},
            {"openmp_threads", omp_get_max_threads()},
            {"omp_wait_policy", wait ? wait : ""},
            {"backend", ctx.backend->name()}};
  if (ctx.backend->name() == "cuda") {
    const stimloop::DeviceInfo d = stimloop::probe_device();
    m["gpu"] = {{"name", d.name},
                {"compute_capability", d.compute_capability},
                {"multiprocessors", d.multiprocessors},
                {"memory_gib", double(d.memory_bytes) / (1024.0 * 1024.0 * 1024.0)}};
  }
  return m;
}

Status load_models_list(Context& ctx) {
  const std::string path = ctx.data + "/golden/models_list.txt";
  std::ifstream in(path);
  if (!in) return stimloop::not_found("cannot open " + path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, '\t');) cells.push_back(cell);
    if (cells.size() < 4) continue;
    try {
      ctx.rows[cells[3]] = {std::stoi(cells[0]), cells[1]};
    } catch (const std::exception&) {
      continue;
    }
  }
  if (ctx.rows.empty()) return stimloop::data_loss(path + " lists no models");
  return Status::Ok();
}

StatusOr<std::shared_ptr<const Model>> get_model(Context& ctx, const std::string& path) {
  if (auto it = ctx.models.find(path); it != ctx.models.end()) return it->second;
  ASSIGN_OR_RETURN(auto model, stimloop::load_keras_model(path));
  ctx.models[path] = model;
  return model;
}

// create + run_synthesis, as client/cli/synthesis_job.cpp does (no deadline). With a tty on
// stderr, an in-place progress line.
StatusOr<syn::SynthesisResult> synthesize(Context& ctx, const syn::SynthesisRequest& request,
                                          const Model& model, ResidentNetwork* resident,
                                          const std::string& label) {
  ASSIGN_OR_RETURN(auto run, syn::SynthesisRun::create(request, model.channel_means, *ctx.backend,
                                                       model.network, resident));
  syn::RunControl control;
  const bool tty = isatty(STDERR_FILENO) != 0;
  if (tty) {
    control.progress_every = std::max(1, request.steps / 20);
    control.on_progress = [&](const syn::ProgressEvent& e) {
      note("\r  %s: step %d/%d   ", label.c_str(), e.steps_done, e.steps);
    };
  }
  auto result = syn::run_synthesis(*run, control);
  if (tty) note("\r%*s\r", int(label.size()) + 30, "");
  return result;
}

syn::SynthesisRequest cowley_request(const Context& ctx) {
  syn::SynthesisRequest r;
  r.objective = syn::ObjectiveKind::kMax;
  r.output_index = 0;
  r.method = syn::MethodKind::kCowley2026;
  // The method's defaults (1000 steps of 10, the authors' values); --steps / --quick change the
  // step count only.
  r.steps = ctx.opt.steps >= 0 ? ctx.opt.steps : ctx.sizes.steps;
  r.step_size = syn::method_defaults(r.method, r.norm, r.epsilon).step_size;
  r.count = ctx.opt.seeds >= 0 ? ctx.opt.seeds : ctx.sizes.seeds;
  r.seed = ctx.opt.seed;
  r.init = syn::InitKind::kNoise;
  return r;
}

std::string mode_of(const Context& ctx, bool partial) {
  if (ctx.opt.quick) return "quick";
  return partial ? "partial" : "";
}

// ---------------------------------------------------------------------------------------------
// cowley2026 preferred stimuli

Status run_cowley(Context& ctx) {
  const auto t_section = Clock::now();
  const std::string path = ctx.data + "/golden/synthesis.json";
  std::ifstream in(path);
  const json ref = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (ref.is_discarded() || !ref.contains("results")) {
    return stimloop::data_loss(path + " is not the expected JSON");
  }
  const syn::SynthesisRequest request = cowley_request(ctx);
  const int n_models = std::min<int>(ctx.opt.models >= 0 ? ctx.opt.models : ctx.sizes.cowley_models,
                                     static_cast<int>(ref["results"].size()));
  const bool partial = ctx.changed(ctx.opt.models, kFull.cowley_models) ||
                       ctx.changed(ctx.opt.seeds, kFull.seeds) ||
                       ctx.changed(ctx.opt.steps, kFull.steps);

  json rows = json::array();
  int models_pass = 0, above_total = 0, stimuli_total = 0;
  double worst_ratio = INFINITY, worst_over_natural = INFINITY;
  for (int m = 0; m < n_models; ++m) {
    // Spread over the reference list (with fewer models, e.g. --quick, several sessions).
    const json& r = ref["results"][(m * static_cast<int>(ref["results"].size())) / n_models];
    const std::string file = r.at("model").get<std::string>();
    const double ref_median = r.at("median_8bit").get<double>();
    const double max_natural = r.at("max_natural").get<double>();
    ASSIGN_OR_RETURN(auto model, get_model(ctx, ctx.data + "/compact_models/" + file));
    note("[cowley %d/%d] %s: %d seeds x %d steps ...", m + 1, n_models, model->info.id.c_str(),
         request.count, request.steps);
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(auto result, synthesize(ctx, request, *model, nullptr, model->info.id));
    const double wall = seconds_since(t0);
    note(" %.1f s\n", wall);

    std::vector<double> responses;
    for (const auto& st : result.stimuli) responses.push_back(st.response);
    const double med = median(responses);
    const double ratio = med / ref_median;
    const bool pass = med >= 0.95 * ref_median;
    const int above = static_cast<int>(std::count_if(responses.begin(), responses.end(),
                                                     [&](double v) { return v > max_natural; }));
    const double min_over_natural =
        *std::min_element(responses.begin(), responses.end()) / max_natural;
    models_pass += pass;
    above_total += above;
    stimuli_total += static_cast<int>(responses.size());
    worst_ratio = std::min(worst_ratio, ratio);
    worst_over_natural = std::min(worst_over_natural, min_over_natural);
    rows.push_back({{"model", model->info.id},
                    {"responses_8bit", responses},
                    {"median_8bit", med},
                    {"reference_median_8bit", ref_median},
                    {"ratio_to_reference", ratio},
                    {"pass", pass},
                    {"max_natural", max_natural},
                    {"above_max_natural", above},
                    {"min_over_max_natural", min_over_natural},
                    {"steps_done", result.steps_done},
                    {"wall_s", wall},
                    {"ms_per_step", 1e3 * wall / std::max(1, result.steps_done)}});
    if (m == 0) {
      ctx.cowley_request = request;
      ctx.cowley_model = ctx.data + "/compact_models/" + file;
      ctx.cowley_result = std::move(result);
    }
  }
  const double wall = seconds_since(t_section);
  const std::string mode = mode_of(ctx, partial);
  ctx.bars.push_back({"cowley", "median 8-bit response >= 0.95 x reference median (worst model)",
                      worst_ratio, 0.95, ">=", models_pass == n_models, mode,
                      std::to_string(models_pass) + "/" + std::to_string(n_models) + " models"});
  ctx.bars.push_back(
      {"cowley", "every best 8-bit response > max natural (min ratio)", worst_over_natural, 1.0,
       ">", above_total == stimuli_total, mode,
       std::to_string(above_total) + "/" + std::to_string(stimuli_total) + " stimuli"});
  ctx.sections["cowley"] = {
      {"request", syn::to_json(request)}, {"models", rows}, {"wall_s", wall}, {"mode", mode}};

  if (!ctx.opt.json) {
    std::printf(
        "\n== cowley2026 preferred stimuli: max of output 0, %d steps, step %g, %d seeds "
        "(%llu..%llu) in one batch per model%s\n",
        request.steps, request.step_size, request.count,
        static_cast<unsigned long long>(request.seed),
        static_cast<unsigned long long>(request.seed + request.count - 1),
        mode.empty() ? "" : ("  [" + mode + "]").c_str());
    std::printf("%-32s %9s %9s %7s %5s %9s %7s %8s %8s\n", "model", "median8", "ref med", "ratio",
                "bar", "min/maxN", ">maxN", "ms/step", "wall s");
    for (const auto& row : rows) {
      std::printf(
          "%-32s %9.3f %9.3f %7.3f %5s %9.2f %4d/%-2d %8.1f %8.1f\n",
          row["model"].get<std::string>().c_str(), row["median_8bit"].get<double>(),
          row["reference_median_8bit"].get<double>(), row["ratio_to_reference"].get<double>(),
          row["pass"].get<bool>() ? "PASS" : "FAIL", row["min_over_max_natural"].get<double>(),
          row["above_max_natural"].get<int>(), static_cast<int>(row["responses_8bit"].size()),
          row["ms_per_step"].get<double>(), row["wall_s"].get<double>());
    }
    std::printf("section wall time %.1f s\n", wall);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// adversarial, L-inf epsilon 4, pgd

// Models of the two sessions whose images are in images_raw_uint8.npy: those of synthesis.json
// first, alternating sessions (so that --quick's two models cover both), then the lowest-numbered
// neuron of each session not already there.
std::vector<std::string> adversarial_models() {
  return {"compact_model_190923_neuron0.keras",  "compact_model_210225_neuron7.keras",
          "compact_model_190923_neuron16.keras", "compact_model_210225_neuron27.keras",
          "compact_model_190923_neuron1.keras",  "compact_model_210225_neuron0.keras"};
}

Status run_adversarial(Context& ctx) {
  const auto t_section = Clock::now();
  constexpr double kEpsilon = 4.0;
  const std::string images_path = ctx.data + "/golden/images_raw_uint8.npy";
  ASSIGN_OR_RETURN(auto images, stimloop::read_npy(images_path));
  if (images.dtype != stimloop::NpyDtype::kUint8 || images.shape.size() != 4 ||
      images.shape[0] != 64 || images.shape[3] != 3) {
    return stimloop::data_loss(images_path + ": expected (64, h, w, 3) uint8");
  }
  const std::int64_t image_size = images.shape[1] * images.shape[2] * 3;
  ASSIGN_OR_RETURN(auto golden, stimloop::read_npy(ctx.data + "/golden/compact_responses_f64.npy"));
  const std::vector<double> golden_responses = golden.to_double();  // (219, 64)
  const std::int64_t golden_cols = golden.shape.size() == 2 ? golden.shape[1] : 0;

  const std::vector<std::string> files = adversarial_models();
  const int n_models = std::min<int>(
      ctx.opt.models >= 0 ? ctx.opt.models : ctx.sizes.adversarial_models, int(files.size()));
  const int n_images = std::clamp(ctx.opt.images >= 0 ? ctx.opt.images : ctx.sizes.images, 1, 32);
  const bool partial = ctx.changed(ctx.opt.models, kFull.adversarial_models) ||
                       ctx.changed(ctx.opt.images, kFull.images);

  syn::SynthesisRequest base;
  base.objective = syn::ObjectiveKind::kAdversarial;
  base.method = syn::MethodKind::kPgd;  // the CLI's default for the adversarial objective
  base.norm = syn::Norm::kLinf;
  base.epsilon = kEpsilon;
  const auto d = syn::method_defaults(base.method, base.norm, base.epsilon);
  base.steps = d.steps;
  base.step_size = d.step_size;
  base.init = syn::InitKind::kImage;
  base.count = 1;  // one start image per run; pgd L-inf draws no random numbers
  base.seed = ctx.opt.seed;

  json rows = json::array();
  int up_hits = 0, down_hits = 0, pairs = 0;
  int max_dev = 0;
  json natural_std = json::object();
  bool all_from_naturals = true;
  if (!ctx.opt.natural_std.empty()) {
    std::ifstream in(ctx.opt.natural_std);
    natural_std = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!natural_std.is_object()) {
      return stimloop::invalid_argument("--natural-std " + ctx.opt.natural_std +
                                        " is not a JSON object {model id: std}");
    }
  }
  for (int m = 0; m < n_models; ++m) {
    const std::string& file = files[m];
    const auto row_it = ctx.rows.find(file);
    if (row_it == ctx.rows.end()) return stimloop::not_found(file + " is not in models_list.txt");
    const auto [golden_row, session] = row_it->second;
    const int first = session == "190923" ? 0 : session == "210225" ? 32 : -1;
    if (first < 0) return stimloop::internal_error(file + ": no golden images of its session");
    ASSIGN_OR_RETURN(auto model, get_model(ctx, ctx.data + "/compact_models/" + file));
    ASSIGN_OR_RETURN(auto resident, ctx.backend->upload(model->network));
    const auto t0 = Clock::now();

    // The response spread. The bar asks for the std over the session's 1200 natural images;
    // those are JPEGs in images_<session>.zip, which this OpenCV-free binary cannot decode.
    // PROXY: the sample std (n - 1) of the model's responses, computed here on this backend, to
    // the 32 golden images of its session (the first 32 of those 1200).
    const std::vector<std::uint8_t> session_pixels(images.data.begin() + first * image_size,
                                                   images.data.begin() + (first + 32) * image_size);
    const std::vector<float> x = stimloop::recenter_rgb8(session_pixels, model->channel_means);
    std::vector<float> out(32 * model->network->num_outputs());
    RETURN_IF_ERROR(resident->forward(x, 32, out));
    std::vector<double> natural(32);
    double golden_dev = 0.0;
    for (int k = 0; k < 32; ++k) {
      natural[k] = out[k * model->network->num_outputs()];
      if (golden_cols == 64) {
        golden_dev = std::max(golden_dev,
                              std::abs(natural[k] - golden_responses[golden_row * 64 + first + k]));
      }
    }
    // The real spread, when scripts/natural-std.sh computed it (it needs the JPEG decoder).
    double sd = sample_std(natural);
    bool sd_from_naturals = false;
    if (natural_std.contains(model->info.id)) {
      sd = natural_std[model->info.id].get<double>();
      sd_from_naturals = true;
    }
    all_from_naturals &= sd_from_naturals;

    json image_rows = json::array();
    int m_up = 0, m_down = 0, m_dev = 0;
    std::vector<double> up_delta, down_delta;
    note("[adversarial %d/%d] %s: %d images x up/down ...", m + 1, n_models, model->info.id.c_str(),
         n_images);
    for (int i = 0; i < n_images; ++i) {
      const int local = (i * 32) / n_images;  // spread over the 32
      const int index = first + local;
      syn::SynthesisRequest r = base;
      r.init_pixels.assign(images.data.begin() + index * image_size,
                           images.data.begin() + (index + 1) * image_size);
      r.init_image = "golden/images_raw_uint8.npy[" + std::to_string(index) + "]";
      r.init_image_sha256 = stimloop::sha256_hex(r.init_pixels);
      const double original = natural[local];
      json image_row = {{"image", index}, {"original", original}};
      for (syn::Direction dir : {syn::Direction::kUp, syn::Direction::kDown}) {
        r.direction = dir;
        ASSIGN_OR_RETURN(auto result,
                         synthesize(ctx, r, *model, resident.get(),
                                    model->info.id + " image " + std::to_string(index)));
        const syn::Stimulus& st = result.stimuli.at(0);
        int dev = 0;
        for (std::int64_t j = 0; j < image_size; ++j) {
          dev = std::max(dev, std::abs(int(st.pixels[j]) - int(r.init_pixels[j])));
        }
        m_dev = std::max(m_dev, dev);
        const double delta = st.response - original;
        const bool up = dir == syn::Direction::kUp;
        const bool hit = up ? delta >= sd : -delta >= sd;
        (up ? m_up : m_down) += hit;
        (up ? up_delta : down_delta).push_back(delta / sd);
        image_row[up ? "up" : "down"] = {{"response", st.response},
                                         {"delta_over_std", delta / sd},
                                         {"hit", hit},
                                         {"max_pixel_deviation", dev}};
      }
      image_rows.push_back(image_row);
    }
    const double wall = seconds_since(t0);
    note(" %.1f s\n", wall);
    up_hits += m_up;
    down_hits += m_down;
    pairs += n_images;
    max_dev = std::max(max_dev, m_dev);
    rows.push_back({{"model", model->info.id},
                    {"session", session},
                    {"std_proxy", sd},
                    {"std_source", sd_from_naturals ? "1200 natural images" : "proxy (32 images)"},
                    {"backend_vs_golden_max_abs", golden_dev},
                    {"up_hits", m_up},
                    {"down_hits", m_down},
                    {"pairs", n_images},
                    {"median_up_delta_over_std", median(up_delta)},
                    {"median_down_delta_over_std", median(down_delta)},
                    {"max_pixel_deviation", m_dev},
                    {"images", image_rows},
                    {"wall_s", wall}});
  }
  const double wall = seconds_since(t_section);
  const std::string mode = mode_of(ctx, partial);
  const double up_rate = pairs ? double(up_hits) / pairs : 0.0;
  const double down_rate = pairs ? double(down_hits) / pairs : 0.0;
  const std::string of_pairs =
      "/" + std::to_string(pairs) + " pairs; std = " +
      (all_from_naturals ? std::string("1200 natural images") : std::string("proxy (32 images)"));
  ctx.bars.push_back({"adversarial", "up: response + >= 1 std, fraction of pairs", up_rate, 0.90,
                      ">=", up_rate >= 0.90, mode, std::to_string(up_hits) + of_pairs});
  ctx.bars.push_back({"adversarial", "down: response - >= 1 std, fraction of pairs", down_rate,
                      0.75, ">=", down_rate >= 0.75, mode, std::to_string(down_hits) + of_pairs});
  ctx.bars.push_back({"adversarial", "max |8-bit result - original| (levels)", double(max_dev),
                      std::floor(kEpsilon), "<=", max_dev <= std::floor(kEpsilon), mode,
                      "over all " + std::to_string(2 * pairs) + " results, every pixel"});
  ctx.sections["adversarial"] = {
      {"request", syn::to_json(base)},
      {"std_proxy",
       "sample std (n-1) of the model's responses on this backend to the 32 golden images of its "
       "session (the first 32 of its 1200 natural images); the 1200 JPEGs need a decoder this "
       "OpenCV-free binary lacks"},
      {"models", rows},
      {"wall_s", wall},
      {"mode", mode}};

  if (!ctx.opt.json) {
    std::printf(
        "\n== adversarial: pgd, L-inf epsilon %g, %d steps of %g, up and down, %d images "
        "of the model's session each%s\n",
        kEpsilon, base.steps, base.step_size, n_images,
        mode.empty() ? "" : ("  [" + mode + "]").c_str());
    std::printf(all_from_naturals
                    ? "   std = over the session's 1200 natural images (--natural-std)\n"
                    : "   std = PROXY: sample std of the model's responses to the 32 golden "
                      "images of its session (not the 1200 JPEGs; see --natural-std)\n");
    std::printf("%-32s %8s %8s %7s %9s %7s %9s %6s %7s\n", "model", "std", "|b-gold|", "up hit",
                "med up/sd", "dn hit", "med dn/sd", "maxdev", "wall s");
    for (const auto& row : rows) {
      std::printf("%-32s %8.4f %8.1e %3d/%-3d %9.2f %3d/%-3d %9.2f %6d %7.1f\n",
                  row["model"].get<std::string>().c_str(), row["std_proxy"].get<double>(),
                  row["backend_vs_golden_max_abs"].get<double>(), row["up_hits"].get<int>(),
                  row["pairs"].get<int>(), row["median_up_delta_over_std"].get<double>(),
                  row["down_hits"].get<int>(), row["pairs"].get<int>(),
                  row["median_down_delta_over_std"].get<double>(),
                  row["max_pixel_deviation"].get<int>(), row["wall_s"].get<double>());
    }
    std::printf("section wall time %.1f s\n", wall);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// population one-hot on the shared 50-filter model

Status run_population(Context& ctx) {
  const auto t_section = Clock::now();
  const std::string file = "shared_compact_model_50filters.keras";
  ASSIGN_OR_RETURN(auto model, get_model(ctx, ctx.data + "/shared_compact_models/" + file));
  ASSIGN_OR_RETURN(auto resident, ctx.backend->upload(model->network));
  const int outputs = static_cast<int>(model->network->num_outputs());
  const int n_targets =
      std::clamp(ctx.opt.targets >= 0 ? ctx.opt.targets : ctx.sizes.targets, 1, outputs);
  const bool partial = ctx.changed(ctx.opt.targets, kFull.targets) ||
                       ctx.changed(ctx.opt.population_steps, kFull.population_steps);

  syn::SynthesisRequest base;
  base.objective = syn::ObjectiveKind::kPopulation;
  base.mode = syn::PopulationMode::kOneHot;
  base.method = syn::MethodKind::kAdam;  // the CLI's default for population objectives
  const auto d = syn::method_defaults(base.method, base.norm, base.epsilon);
  base.steps =
      ctx.opt.population_steps >= 0 ? ctx.opt.population_steps : ctx.sizes.population_steps;
  base.step_size = d.step_size;
  base.init = syn::InitKind::kNoise;
  base.count = 1;
  base.seed = ctx.opt.seed;
  base.targets = {0};

  json rows = json::array();
  int hits = 0;
  note("[population] %s: %d targets x %d steps ...", model->info.id.c_str(), n_targets, base.steps);
  for (int i = 0; i < n_targets; ++i) {
    // Spread evenly over 0..outputs-1, both ends included.
    const int target =
        n_targets == 1 ? 0
                       : static_cast<int>(std::lround(double(i) * (outputs - 1) / (n_targets - 1)));
    syn::SynthesisRequest r = base;
    r.targets = {target};
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(auto result, synthesize(ctx, r, *model, resident.get(),
                                             "target " + std::to_string(target)));
    const double wall = seconds_since(t0);
    const syn::Stimulus& st = result.stimuli.at(0);
    const int argmax = static_cast<int>(std::max_element(st.outputs.begin(), st.outputs.end()) -
                                        st.outputs.begin());
    double runner_up = -INFINITY;
    for (int k = 0; k < outputs; ++k) {
      if (k != target) runner_up = std::max(runner_up, double(st.outputs[k]));
    }
    const bool hit = argmax == target;
    hits += hit;
    rows.push_back({{"target", target},
                    {"argmax", argmax},
                    {"hit", hit},
                    {"target_response", st.outputs[target]},
                    {"margin", st.outputs[target] - runner_up},
                    {"softmax_share", st.response},
                    {"wall_s", wall}});
  }
  const double wall = seconds_since(t_section);
  note(" %.1f s\n", wall);
  const std::string mode = mode_of(ctx, partial);
  const double rate = double(hits) / n_targets;
  ctx.bars.push_back({"population", "one-hot: target is the argmax of all outputs, hit rate", rate,
                      0.90, ">=", rate >= 0.90, mode,
                      std::to_string(hits) + "/" + std::to_string(n_targets) + " targets"});
  ctx.sections["population"] = {{"model", model->info.id},
                                {"request", syn::to_json(base)},
                                {"targets", rows},
                                {"hits", hits},
                                {"hit_rate", rate},
                                {"wall_s", wall},
                                {"mode", mode}};
  if (!ctx.opt.json) {
    std::printf(
        "\n== population one-hot: %s (%d outputs), adam, %d steps of %g, seed %llu, "
        "%d targets%s\n",
        model->info.id.c_str(), outputs, base.steps, base.step_size,
        static_cast<unsigned long long>(base.seed), n_targets,
        mode.empty() ? "" : ("  [" + mode + "]").c_str());
    std::printf("%7s %7s %4s %10s %9s %8s %7s\n", "target", "argmax", "hit", "response", "margin",
                "share", "wall s");
    for (const auto& row : rows) {
      std::printf("%7d %7d %4s %10.3f %9.3f %8.3f %7.1f\n", row["target"].get<int>(),
                  row["argmax"].get<int>(), row["hit"].get<bool>() ? "yes" : "NO",
                  row["target_response"].get<double>(), row["margin"].get<double>(),
                  row["softmax_share"].get<double>(), row["wall_s"].get<double>());
    }
    std::printf("hit rate %d/%d = %.2f; section wall time %.1f s\n", hits, n_targets, rate, wall);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// replay: the first cowley run, recomputed from its record

std::int64_t differing_bytes(const std::vector<std::uint8_t>& a,
                             const std::vector<std::uint8_t>& b) {
  if (a.size() != b.size()) return std::int64_t(std::max(a.size(), b.size()));
  std::int64_t n = 0;
  for (std::size_t j = 0; j < a.size(); ++j) n += a[j] != b[j];
  return n;
}

Status run_replay(Context& ctx) {
  const auto t_section = Clock::now();
  const bool partial =
      ctx.changed(ctx.opt.seeds, kFull.seeds) || ctx.changed(ctx.opt.steps, kFull.steps);
  if (!ctx.cowley_result) {  // --only replay: make the first run here
    std::ifstream in(ctx.data + "/golden/synthesis.json");
    const json ref = json::parse(in, nullptr, false);
    if (ref.is_discarded() || ref["results"].empty()) {
      return stimloop::data_loss("golden/synthesis.json is not the expected JSON");
    }
    ctx.cowley_model =
        ctx.data + "/compact_models/" + ref["results"][0]["model"].get<std::string>();
    ctx.cowley_request = cowley_request(ctx);
    ASSIGN_OR_RETURN(auto model, get_model(ctx, ctx.cowley_model));
    note("[replay] %s: first run, %d seeds x %d steps ...", model->info.id.c_str(),
         ctx.cowley_request->count, ctx.cowley_request->steps);
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(ctx.cowley_result,
                     synthesize(ctx, *ctx.cowley_request, *model, nullptr, model->info.id));
    note(" %.1f s\n", seconds_since(t0));
  }
  ASSIGN_OR_RETURN(auto model, get_model(ctx, ctx.cowley_model));
  const syn::SynthesisResult& first = *ctx.cowley_result;

  // The record of stimulus 0, as `stimloop synthesize` writes it (no PNG: no OpenCV here), and
  // back, as `stimloop replay` reads it.
  syn::StimulusFiles files;
  files.pixels_sha256 = stimloop::sha256_hex(first.stimuli.at(0).pixels);
  files.width = model->info.in_w;
  files.height = model->info.in_h;
  const syn::ModelIdentity identity{model->info.id, model->info.sha256, model->info.source,
                                    model->info.demo};
  const json record = syn::make_record(*ctx.cowley_request, identity, ctx.backend->name(), first,
                                       first.stimuli[0], files);
  ASSIGN_OR_RETURN(auto parsed, syn::parse_record(json::parse(record.dump())));

  note("[replay] %s: replaying %d steps from the record ...", model->info.id.c_str(),
       parsed.steps_done);
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(auto run, syn::SynthesisRun::create(parsed.request, model->channel_means,
                                                       *ctx.backend, model->network));
  for (int i = 0; i < parsed.steps_done; ++i) RETURN_IF_ERROR(run->step());
  ASSIGN_OR_RETURN(auto again, run->finish(run->done() ? syn::StopReason::kCompleted
                                                       : syn::StopReason::kDeadline));
  const double replay_wall = seconds_since(t0);
  note(" %.1f s\n", replay_wall);

  std::int64_t diff = 0;
  int stimuli_same = 0;
  json per_stimulus = json::array();
  const std::size_t n = std::min(first.stimuli.size(), again.stimuli.size());
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t d = differing_bytes(first.stimuli[i].pixels, again.stimuli[i].pixels);
    diff += d;
    stimuli_same += d == 0;
    per_stimulus.push_back({{"index", i},
                            {"differing_bytes", d},
                            {"response", first.stimuli[i].response},
                            {"replayed_response", again.stimuli[i].response}});
  }
  if (first.stimuli.size() != again.stimuli.size()) diff += 1;
  const bool record_sha_same =
      stimloop::sha256_hex(again.stimuli.at(parsed.index).pixels) == parsed.files.pixels_sha256;

  // Information only (no bar): stimulus 1 of the batch recomputed alone (count 1, its seed).
  json alone = nullptr;
  if (first.stimuli.size() > 1) {
    syn::SynthesisRequest r = parsed.request;
    r.count = 1;
    r.seed = parsed.request.seed + 1;
    note("[replay] stimulus 1 alone (count 1, seed %llu) ...",
         static_cast<unsigned long long>(r.seed));
    const auto t1 = Clock::now();
    ASSIGN_OR_RETURN(auto single, synthesize(ctx, r, *model, nullptr, "alone"));
    note(" %.1f s\n", seconds_since(t1));
    const std::int64_t d = differing_bytes(first.stimuli[1].pixels, single.stimuli.at(0).pixels);
    int max_level = 0;
    for (std::size_t j = 0; j < single.stimuli[0].pixels.size(); ++j) {
      max_level = std::max(
          max_level, std::abs(int(single.stimuli[0].pixels[j]) - int(first.stimuli[1].pixels[j])));
    }
    alone = {{"seed", r.seed},
             {"differing_bytes", d},
             {"max_level_difference", max_level},
             {"response_in_batch", first.stimuli[1].response},
             {"response_alone", single.stimuli[0].response}};
  }
  const double wall = seconds_since(t_section);
  const std::string mode = mode_of(ctx, partial);
  ctx.bars.push_back({"replay", "bytes differing after replay from the record", double(diff), 0.0,
                      "==", diff == 0 && record_sha_same, mode,
                      std::to_string(stimuli_same) + "/" + std::to_string(first.stimuli.size()) +
                          " stimuli identical; record pixels_sha256 " +
                          (record_sha_same ? "matches" : "DIFFERS")});
  ctx.sections["replay"] = {{"model", model->info.id},
                            {"request", syn::to_json(parsed.request)},
                            {"steps_done", parsed.steps_done},
                            {"stimuli", per_stimulus},
                            {"record_pixels_sha256_matches", record_sha_same},
                            {"replay_wall_s", replay_wall},
                            {"alone_info", alone},
                            {"wall_s", wall},
                            {"mode", mode}};
  if (!ctx.opt.json) {
    std::printf(
        "\n== replay: %s, cowley2026 %d steps, %d stimuli, recomputed from the JSON "
        "record%s\n",
        model->info.id.c_str(), parsed.steps_done, parsed.request.count,
        mode.empty() ? "" : ("  [" + mode + "]").c_str());
    std::printf(
        "identical stimuli %d/%zu, differing bytes %lld, record pixels_sha256 %s, "
        "replay %.1f s\n",
        stimuli_same, first.stimuli.size(), static_cast<long long>(diff),
        record_sha_same ? "matches" : "DIFFERS", replay_wall);
    if (!alone.is_null()) {
      std::printf(
          "(info) stimulus 1 recomputed alone (count 1, seed %llu): %lld differing bytes, "
          "max %d levels; response %.4f in the batch, %.4f alone\n",
          static_cast<unsigned long long>(alone["seed"].get<std::uint64_t>()),
          static_cast<long long>(alone["differing_bytes"].get<std::int64_t>()),
          alone["max_level_difference"].get<int>(), alone["response_in_batch"].get<double>(),
          alone["response_alone"].get<double>());
    }
    std::printf("section wall time %.1f s\n", wall);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------

std::string format_value(double v) {
  char buf[32];
  if (std::abs(v) >= 1e4 || (v != 0 && std::abs(v) < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.3e", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f", v);
  }
  return buf;
}

int run(Context& ctx) {
  const Options& opt = ctx.opt;
  ctx.sizes = opt.quick ? kQuick : kFull;
  ctx.data = stimloop::bench::find_v4_data("golden/synthesis.json");
  if (ctx.data.empty()) {
    std::cerr << "stimloop-bench-synthesis: the published V4 data was not found (set "
                 "STIMLOOP_V4_DATA to the folder holding golden/synthesis.json)\n";
    return 1;
  }
  if (opt.backend == "cuda") {
    auto cuda = stimloop::make_cuda_backend();
    if (!cuda.ok()) {
      std::cerr << "stimloop-bench-synthesis: " << cuda.status().to_string() << "\n";
      return 1;
    }
    ctx.backend = std::move(*cuda);
  } else {
    ctx.backend = stimloop::make_cpu_backend();
  }
  if (Status s = load_models_list(ctx); !s.ok()) {
    std::cerr << "stimloop-bench-synthesis: " << s.to_string() << "\n";
    return 1;
  }

  std::set<std::string> only(opt.only.begin(), opt.only.end());
  auto wanted = [&](const std::string& s) { return only.empty() || only.count(s) > 0; };
  const json machine = machine_info(ctx);
  if (!opt.json) {
    std::printf("stimloop-bench-synthesis %s: backend %s%s\n", STIMLOOP_VERSION,
                ctx.backend->name().c_str(), opt.quick ? "  (--quick: smoke sizes)" : "");
    std::printf("machine  %s, %s, %u hardware threads, %d OpenMP threads, OMP_WAIT_POLICY=%s\n",
                machine["host"].get<std::string>().c_str(),
                machine["cpu"].get<std::string>().c_str(),
                machine["hardware_threads"].get<unsigned>(), machine["openmp_threads"].get<int>(),
                machine["omp_wait_policy"].get<std::string>().empty()
                    ? "(unset)"
                    : machine["omp_wait_policy"].get<std::string>().c_str());
    if (machine.contains("gpu")) {
      std::printf("gpu      %s (sm_%d, %d SMs, %.1f GiB)\n",
                  machine["gpu"]["name"].get<std::string>().c_str(),
                  machine["gpu"]["compute_capability"].get<int>(),
                  machine["gpu"]["multiprocessors"].get<int>(),
                  machine["gpu"]["memory_gib"].get<double>());
    }
    std::printf("data     %s\n", ctx.data.c_str());
    std::fflush(stdout);
  }

  const auto t_all = Clock::now();
  const std::vector<std::pair<std::string, Status (*)(Context&)>> sections = {
      {"cowley", run_cowley},
      {"adversarial", run_adversarial},
      {"population", run_population},
      {"replay", run_replay}};
  for (const auto& [name, fn] : sections) {
    if (!wanted(name)) continue;
    if (Status s = fn(ctx); !s.ok()) {
      std::cerr << "\nstimloop-bench-synthesis: " << name << ": " << s.to_string() << "\n";
      return 1;
    }
    std::fflush(stdout);
  }
  const double total = seconds_since(t_all);

  int failed = 0;
  for (const auto& b : ctx.bars) failed += !b.pass;
  if (opt.json) {
    json j;
    j["machine"] = machine;
    j["quick"] = opt.quick;
    j["data"] = ctx.data;
    j["sections"] = ctx.sections;
    j["bars"] = json::array();
    for (const auto& b : ctx.bars) {
      j["bars"].push_back({{"section", b.section},
                           {"bar", b.name},
                           {"value", b.value},
                           {"comparison", b.comparison},
                           {"threshold", b.threshold},
                           {"verdict", b.pass ? "PASS" : "FAIL"},
                           {"mode", b.mode},
                           {"detail", b.detail}});
    }
    j["bars_failed"] = failed;
    j["wall_s"] = total;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::printf("\n== bars (backend %s)\n", ctx.backend->name().c_str());
  std::printf("%-12s %-60s %10s %-9s %-15s %s\n", "section", "bar", "value", "threshold", "verdict",
              "detail");
  for (const auto& b : ctx.bars) {
    const std::string threshold = b.comparison + " " + format_value(b.threshold);
    const std::string verdict =
        std::string(b.pass ? "PASS" : "FAIL") + (b.mode.empty() ? "" : " (" + b.mode + ")");
    std::printf("%-12s %-60s %10s %-9s %-15s %s\n", b.section.c_str(), b.name.c_str(),
                format_value(b.value).c_str(), threshold.c_str(), verdict.c_str(),
                b.detail.c_str());
  }
  std::printf("%d of %zu bars FAIL%s; total wall time %.1f s\n", failed, ctx.bars.size(),
              opt.quick ? " (quick sizes: verdicts are indicative only)" : "", total);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Context ctx;
  Options& opt = ctx.opt;
  CLI::App app{
      "stimloop-bench-synthesis: the synthesis quality bars (cowley2026 preferred "
      "stimuli, adversarial pgd, population one-hot, replay) on the published models"};
  app.add_option("--backend", opt.backend, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_flag("--quick", opt.quick,
               "Smoke sizes: 2 models, 2 seeds, 100 steps, 4 images, 4 targets (bars marked "
               "quick)");
  app.add_flag("--json", opt.json, "Print the results as one JSON document");
  app.add_option("--only", opt.only,
                 "Sections to run (repeatable or comma list): cowley, adversarial, population, "
                 "replay")
      ->delimiter(',')
      ->check(CLI::IsMember({"cowley", "adversarial", "population", "replay"}));
  app.add_option("--seed", opt.seed, "First seed S (cowley uses S..S+count-1)")
      ->capture_default_str();
  app.add_option("--models", opt.models, "Models in the cowley and adversarial sections")
      ->check(CLI::Range(1, 6));
  app.add_option("--seeds", opt.seeds, "Cowley/replay: stimuli per batch (default 8)")
      ->check(CLI::Range(1, syn::kMaxCount));
  app.add_option("--steps", opt.steps, "Cowley/replay: steps (default 1000)")
      ->check(CLI::Range(1, syn::kMaxSteps));
  app.add_option("--images", opt.images, "Adversarial: images per model (default 16)")
      ->check(CLI::Range(1, 32));
  app.add_option("--targets", opt.targets,
                 "Population: targets spread over the outputs (default 20)")
      ->check(CLI::Range(1, 219));
  app.add_option("--natural-std", opt.natural_std,
                 "Adversarial: JSON {model id: std of its responses to the session's 1200 natural "
                 "images}, made by scripts/natural-std.sh (else a 32-image proxy)");
  app.add_option("--population-steps", opt.population_steps, "Population: steps (default 300)")
      ->check(CLI::Range(1, syn::kMaxSteps));
  CLI11_PARSE(app, argc, argv);
  return run(ctx);
}
