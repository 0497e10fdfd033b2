// `stimloop replay RECORD.json`: recomputes a stimulus from its record alone (model by id and
// SHA-256, the full request, the steps it did) and checks that the 8-bit pixels and the PNG bytes
// are identical to what the record says. Exit 0 when identical, 1 otherwise.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "client/cli/commands.h"
#include "client/cli/synthesis_job.h"
#include "common/sha256.h"

namespace stimloop::cli {
namespace {

struct ReplayOptions {
  std::string record;
  bool json = false;
};

int run_replay(const CommonOptions& common, const ReplayOptions& opt) {
  std::ifstream in(opt.record);
  if (!in) return report_error(not_found("cannot open record " + opt.record));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return report_error(invalid_argument(opt.record + " is not JSON"));
  auto parsed = synthesis::parse_record(j);
  if (!parsed.ok()) return report_error(parsed.status().with_context(opt.record));
  synthesis::ParsedRecord& rec = *parsed;

  // The model: by id in the configured directory, else the path the record came from.
  auto repo = open_repository(common);
  if (!repo.ok()) return report_error(repo.status());
  auto model = (*repo)->get(rec.model.id);
  if (!model.ok() && !rec.model.source.empty() && std::filesystem::exists(rec.model.source)) {
    model = resolve_model(rec.model.source, **repo);
  }
  if (!model.ok()) return report_error(model.status().with_context("record's model"));
  if ((*model)->info.sha256 != rec.model.sha256) {
    return report_error(failed_precondition("model " + rec.model.id + " has SHA-256 " +
                                            (*model)->info.sha256 + ", the record was made with " +
                                            rec.model.sha256));
  }
  if (rec.request.init == synthesis::InitKind::kImage) {
    auto image = load_images({rec.request.init_image}, **model, /*resize=*/false);
    if (!image.ok()) return report_error(image.status().with_context("record's --init image"));
    rec.request.init_pixels = image->raw;
    if (sha256_hex(image->raw) != rec.request.init_image_sha256) {
      return report_error(failed_precondition("init image " + rec.request.init_image +
                                              " differs from the one the record was made from"));
    }
  }
  auto backend = make_backend(common);
  if (!backend.ok()) return report_error(backend.status());
  if (!rec.backend.empty() && rec.backend != (*backend)->name()) {
    std::fprintf(stderr,
                 "stimloop: warning: the record was made on backend '%s', replaying on '%s'; "
                 "byte-identity is promised only on the same backend\n",
                 rec.backend.c_str(), (*backend)->name().c_str());
  }
  auto outputs = run_synthesis_job(rec.request, **model, **backend, /*show_progress=*/!opt.json,
                                   rec.steps_done);
  if (!outputs.ok()) return report_error(outputs.status());
  const SynthesisOutput& out = (*outputs)[rec.index];
  const bool pixels_same = out.files.pixels_sha256 == rec.files.pixels_sha256;
  const bool png_same = out.files.png_sha256 == rec.files.png_sha256;
  if (opt.json) {
    std::cout << nlohmann::json{{"record", opt.record},
                                {"identical", pixels_same && png_same},
                                {"pixels_identical", pixels_same},
                                {"png_identical", png_same},
                                {"pixels_sha256", out.files.pixels_sha256},
                                {"png_sha256", out.files.png_sha256},
                                {"response", out.stimulus.response}}
                     .dump()
              << "\n";
  } else {
    std::printf("%s: %s (pixels %s, PNG %s; response %.6g, record %.6g)\n", opt.record.c_str(),
                pixels_same && png_same ? "identical" : "DIFFERENT",
                pixels_same ? "identical" : "differ", png_same ? "identical" : "differ",
                out.stimulus.response, rec.response);
  }
  return pixels_same && png_same ? kExitOk : kExitFailure;
}

}  // namespace

Command add_replay_command(CLI::App& app, const CommonOptions& common) {
  auto* sub = app.add_subcommand("replay",
                                 "Recompute a stimulus from its JSON record and check "
                                 "it is identical");
  auto opt = std::make_shared<ReplayOptions>();
  sub->add_option("record", opt->record, "A record written by synthesize (PATH.json)")->required();
  sub->add_flag("--json", opt->json, "Print the verdict as JSON");
  return {sub, [&common, opt] { return run_replay(common, *opt); }};
}

}  // namespace stimloop::cli
