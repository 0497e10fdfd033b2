#include "server/sessions/session_export.h"

#include <fcntl.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "common/durable_file.h"
#include "common/npy.h"
#include "common/sha256.h"
#include "common/version.h"
#include "models/keras_export.h"
#include "models/keras_writer_core.h"

namespace stimloop::sessions {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Shortest text that reads back to the same double; empty for a missing or non-finite value
// (what CSV readers take as NaN).
std::string number(double v) {
  if (!std::isfinite(v)) return "";
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, v);
  return std::string(text, result.ptr);
}

// RFC 4180: a field holding a comma, a quote or a line break is quoted, its quotes doubled.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line += ',';
    line += csv_field(fields[i]);
  }
  return line + "\r\n";  // RFC 4180 line break
}

std::vector<std::uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

// Text stimloop stored as JSON, parsed back; null when empty, the raw string when unparseable
// (an export should still carry it).
json parsed(const std::string& text) {
  if (text.empty()) return nullptr;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? json(text) : j;
}

// User text (notes, names) may hold invalid UTF-8: replaced, never an exception.
std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string source_field(const StimulusRow& s, const char* key) {
  const json j = json::parse(s.source_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains(key)) return "";
  const json& v = j[key];
  return v.is_string() ? v.get<std::string>() : dump(v);
}

std::vector<std::string> channel_ids(const SessionConfig& config) {
  std::vector<std::string> ids;
  for (const auto& ch : config.channels) ids.push_back(ch.id);
  return ids;
}

std::string stimuli_csv(const ExportInput& in, const std::vector<std::string>& channels) {
  std::vector<std::string> header = {"stimulus_id", "block_index",    "position",    "origin",
                                     "pool_image",  "target_channel", "image_sha256"};
  for (const auto& id : channels) header.push_back("predicted_" + id);
  std::string text = csv_line(header);
  for (const StimulusRow& s : in.stimuli) {
    std::vector<std::string> row = {
        s.stimulus_id, std::to_string(s.block_index), std::to_string(s.position),
        s.origin,      source_field(s, "pool_image"), source_field(s, "channel_id"),
        s.image_sha256};
    for (std::size_t k = 0; k < channels.size(); ++k) {
      row.push_back(k < s.predicted.size() ? number(s.predicted[k]) : "");
    }
    text += csv_line(row);
  }
  return text;
}

std::string trials_csv(const ExportInput& in, const std::vector<std::string>& channels) {
  std::vector<std::string> header = {"stimulus_id", "repeat_index", "valid", "received_unix_ms"};
  header.insert(header.end(), channels.begin(), channels.end());
  std::string text = csv_line(header);
  for (const TrialRow& t : in.trials) {
    std::vector<std::string> row = {t.stimulus_id, std::to_string(t.repeat_index),
                                    t.valid ? "1" : "0", std::to_string(t.received_unix_ms)};
    for (std::size_t k = 0; k < channels.size(); ++k) {
      row.push_back(k < t.responses.size() ? number(t.responses[k]) : "");
    }
    text += csv_line(row);
  }
  return text;
}

std::string session_json(const ExportInput& in, const std::vector<std::string>& channels) {
  int valid = 0;
  for (const auto& t : in.trials) valid += t.valid ? 1 : 0;
  json fits = json::array();
  for (const FitRow& f : in.fits) {
    fits.push_back({{"version", f.version},
                    {"channel_id", f.channel_id},
                    {"created_unix_ms", f.created_unix_ms},
                    {"summary", parsed(f.summary_json)}});
  }
  json models = json::array();
  for (const auto& [id, model] : in.channel_models) {
    models.push_back({{"channel_id", id},
                      {"file", "models/" + id + ".keras"},
                      {"model_id", model->info.id},
                      {"source", model->info.source},
                      {"sha256", model->info.sha256}});
  }
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const json root = {{"format", "stimloop session export"},
                     {"format_version", 1},
                     {"stimloop_version", version()},
                     {"exported_unix_ms", now},
                     {"session",
                      {{"id", in.row.id},
                       {"created_unix_ms", in.row.created_unix_ms},
                       {"closed", in.row.closed},
                       {"closed_unix_ms", in.row.closed_unix_ms},
                       {"blocks", in.row.blocks}}},
                     {"config", to_json(in.config)},
                     {"channels", channels},
                     {"counts",
                      {{"blocks", in.row.blocks},
                       {"stimuli", in.stimuli.size()},
                       {"trials", in.trials.size()},
                       {"valid_trials", valid},
                       {"fits", in.fits.size()},
                       {"models", in.channel_models.size()}}},
                     {"calibration", parsed(in.calibration_json)},
                     {"fits", fits},
                     {"models", models}};
  return dump(root, 2) + "\n";
}

std::string stimuli_sources(const ExportInput& in) {
  std::string text;
  for (const StimulusRow& s : in.stimuli) {
    text += dump(json{{"stimulus_id", s.stimulus_id}, {"source", parsed(s.source_json)}}) + "\n";
  }
  return text;
}

std::string readme(const ExportInput& in, const std::vector<std::string>& channels) {
  std::string ids;
  for (const auto& id : channels) ids += (ids.empty() ? "" : ", ") + id;
  return "stimloop closed-loop session export: session " + in.row.id +
         "\n"
         "Written by stimloop " +
         std::string(version()) +
         ". Every file is plain JSON, CSV (RFC 4180, CRLF line ends, header line first),\n"
         "NumPy .npy, PNG or Keras 3 .keras: no stimloop is needed to read them.\n"
         "Channels, in column order everywhere below: " +
         ids +
         "\n\n"
         "session.json\n"
         "  config: what OpenSession fixed (rig, channels, base model, image pool, calibration\n"
         "  settings, notes); session: id, created/closed times (Unix ms), blocks handed out;\n"
         "  channels; counts of stimuli, trials (valid ones apart), fits, models; calibration:\n"
         "  the live calibration state at export (per channel: cross-validated r, penalty, ...);\n"
         "  fits: the calibration history (one entry per channel per refit, version 1, 2, ...);\n"
         "  models: the calibrated model of each channel and its file.\n\n"
         "stimuli.csv - one row per stimulus handed out, in block, position order\n"
         "  stimulus_id; block_index (0, 1, ... in hand-out order); position (within the block);\n"
         "  origin (pool, synthesized, reference); pool_image (the pool file's name, pool\n"
         "  stimuli); target_channel (the channel a synthesized stimulus was made for);\n"
         "  image_sha256 (SHA-256 of images/<stimulus_id>.png); predicted_<channel>: the\n"
         "  calibrated model's predicted response when the stimulus was handed out, in the\n"
         "  units the rig reports (empty before the first calibration).\n\n"
         "stimuli_sources.jsonl - one JSON object per line, {stimulus_id, source}: where each\n"
         "  stimulus came from (pool and image name; for synthesized ones the model, output\n"
         "  and the replayable synthesis record).\n\n"
         "trials.csv - one row per stored trial, in the order the rig's reports were stored\n"
         "  stimulus_id; repeat_index; valid (1, or 0 for a trial the rig aborted: stored, never\n"
         "  fitted); received_unix_ms (when the server stored it); then one column per channel:\n"
         "  the response as the rig reported it (a spike count or rate; the rig's units).\n\n"
         "trials.npy - float64 array, trials x channels: the same responses, row i = trials.csv\n"
         "  row i (numpy.load). A missing value is NaN.\n\n"
         "images/<stimulus_id>.png - the 8-bit RGB image exactly as shown (the bytes whose\n"
         "  SHA-256 stimuli.csv gives).\n\n"
         "models/<channel_id>.keras - each calibrated channel as a Keras 3 model\n"
         "  (keras.models.load_model): input 8-bit RGB minus the channel means [116.222,\n"
         "  109.270, 100.381], channels-last float32 (batch, height, width, 3) as its InputLayer\n"
         "  says (112 x 112 for the published models); output the predicted\n"
         "  response. The base model's layers up to its last ReLU (BatchNorm folded into the\n"
         "  convolutions) followed by the fitted readout.\n";
}

// Everything written into `dir` (the .partial directory); `files` collects relative paths.
Status write_all(const ExportInput& in, const std::string& dir, std::vector<std::string>& files) {
  const std::vector<std::string> channels = channel_ids(in.config);
  auto put = [&](const std::string& name, const std::string& text) {
    files.push_back(name);
    return write_file_synced(dir + "/" + name, bytes_of(text));
  };
  RETURN_IF_ERROR(put("session.json", session_json(in, channels)));
  RETURN_IF_ERROR(put("stimuli.csv", stimuli_csv(in, channels)));
  RETURN_IF_ERROR(put("stimuli_sources.jsonl", stimuli_sources(in)));
  RETURN_IF_ERROR(put("trials.csv", trials_csv(in, channels)));

  const std::size_t width = channels.size();
  std::vector<double> responses(in.trials.size() * width, std::numeric_limits<double>::quiet_NaN());
  for (std::size_t i = 0; i < in.trials.size(); ++i) {
    const auto& r = in.trials[i].responses;
    for (std::size_t k = 0; k < width && k < r.size(); ++k) responses[i * width + k] = r[k];
  }
  files.push_back("trials.npy");
  const std::int64_t rows = static_cast<std::int64_t>(in.trials.size());
  RETURN_IF_ERROR(write_npy_float64(dir + "/trials.npy", {rows, static_cast<std::int64_t>(width)},
                                    responses.data()));
  RETURN_IF_ERROR(sync_path(dir + "/trials.npy"));

  if (!in.image && !in.stimuli.empty()) return invalid_argument("export: no image source given");
  for (const StimulusRow& s : in.stimuli) {
    auto image = in.image(s.image_sha256);
    if (!image.ok()) {
      return image.status().with_context("export: image of stimulus '" + s.stimulus_id + "'");
    }
    const std::vector<std::uint8_t>& png = *image;
    if (sha256_hex(png) != s.image_sha256) {
      return data_loss("image of stimulus '" + s.stimulus_id + "' does not match its SHA-256 " +
                       s.image_sha256);
    }
    files.push_back("images/" + s.stimulus_id + ".png");
    RETURN_IF_ERROR(write_file_synced(dir + "/" + files.back(), png));
  }
  RETURN_IF_ERROR(sync_path(dir + "/images"));

  for (const auto& [id, model] : in.channel_models) {
    if (model == nullptr) return invalid_argument("export: channel '" + id + "' has no model");
    files.push_back("models/" + id + ".keras");
    RETURN_IF_ERROR(write_keras(*model, dir + "/" + files.back()));
  }
  RETURN_IF_ERROR(sync_path(dir + "/models"));
  RETURN_IF_ERROR(put("README.txt", readme(in, channels)));
  return sync_path(dir);
}

// Ids become file names: only the session ids' safe characters, each stimulus once.
Status check_names(const ExportInput& in) {
  std::set<std::string> seen;
  for (std::size_t i = 0; i < in.stimuli.size(); ++i) {
    const std::string& id = in.stimuli[i].stimulus_id;
    RETURN_IF_ERROR(check_id(id, "stimuli[" + std::to_string(i) + "].stimulus_id"));
    if (!seen.insert(id).second) {
      return invalid_argument("export: stimulus id '" + id + "' appears twice");
    }
  }
  std::set<std::string> models;
  for (const auto& [id, model] : in.channel_models) {
    RETURN_IF_ERROR(check_id(id, "channel model id"));
    if (!models.insert(id).second) {
      return invalid_argument("export: channel '" + id + "' has two models");
    }
  }
  return Status::Ok();
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::symlink_status(path, ec).type() != fs::file_type::not_found;
}

// rename(2) would silently replace an empty directory created meanwhile at `to`.
Status rename_no_replace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return Status::Ok();
  }
  if (errno == EEXIST || errno == ENOTEMPTY) {
    return failed_precondition("export: " + to + " already exists");
  }
  if (errno != EINVAL && errno != ENOSYS) {  // else: a file system without RENAME_NOREPLACE
    return internal_error("export: cannot rename " + from + ": " + std::strerror(errno));
  }
  if (exists(to)) return failed_precondition("export: " + to + " already exists");
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return internal_error("export: cannot rename " + from + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<ExportSummary> export_session(const ExportInput& input, const std::string& directory) {
  if (directory.empty()) return invalid_argument("export: no directory given");
  const std::string final_dir = fs::path(directory).lexically_normal().string();
  const std::string partial = final_dir + ".partial";
  if (exists(final_dir)) {
    return failed_precondition("export: " + final_dir + " already exists");
  }
  RETURN_IF_ERROR(check_names(input));
  const fs::path parent = fs::absolute(final_dir).parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  // create_directory is the claim: of two exports into the same place, one gets it.
  if (ec || !fs::create_directory(partial, ec)) {
    if (exists(partial)) {
      return failed_precondition("export: " + partial +
                                 " exists (an export in progress, or one interrupted: remove it)");
    }
    return internal_error("export: cannot create " + partial + ": " + ec.message());
  }
  ExportSummary summary;
  summary.directory = final_dir;
  Status status = Status::Ok();
  for (const char* sub : {"images", "models"}) {
    if (!fs::create_directory(fs::path(partial) / sub, ec)) {
      status = internal_error("export: cannot create " + partial + "/" + sub + ": " + ec.message());
    }
  }
  if (status.ok()) status = write_all(input, partial, summary.files);
  if (status.ok()) status = rename_no_replace(partial, final_dir);
  if (!status.ok()) {
    fs::remove_all(partial, ec);  // ours alone: created above by this call
    return status;
  }
  RETURN_IF_ERROR(sync_path(parent.string()));
  return summary;
}

}  // namespace stimloop::sessions
