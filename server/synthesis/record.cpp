#include "server/synthesis/record.h"

#include <chrono>
#include <cmath>
#include <ctime>

#include "common/version.h"

namespace stimloop::synthesis {
namespace {

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

// JSON has no NaN: a response never reached is written as null.
nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nullptr; }

}  // namespace

nlohmann::json make_record(const SynthesisRequest& request, const ModelIdentity& model,
                           const std::string& backend, const SynthesisResult& result,
                           const Stimulus& st, const StimulusFiles& files) {
  nlohmann::json trajectory = nlohmann::json::array();
  for (const auto& [step, best] : st.trajectory) trajectory.push_back({step, number_or_null(best)});
  nlohmann::json record = {
      {"stimloop_version", version()},
      {"created_utc", utc_now()},
      {"model",
       {{"id", model.id},
        {"sha256", model.sha256},
        {"source", model.source},
        {"demo", model.demo}}},
      {"backend", backend},
      {"request", to_json(request)},
      {"index", st.index},
      {"seed", st.seed},
      {"steps_done", result.steps_done},
      {"stop_reason", to_string(result.stop_reason)},
      {"response", number_or_null(st.response)},
      {"objective", number_or_null(st.objective)},
      {"best_objective_float", number_or_null(st.best_objective_float)},
      {"trajectory", trajectory},
      {"wall_ms", result.wall_ms},
      {"png", files.png},
      {"png_sha256", files.png_sha256},
      {"pixels_sha256", files.pixels_sha256},
      {"width", files.width},
      {"height", files.height},
  };
  // Every output of the model, multi-output models too (219 numbers are small next to the image);
  // the channel objective's network ends inside the model, so its "outputs" are a whole
  // activation map: left out.
  if (request.objective != ObjectiveKind::kChannel) record["outputs"] = st.outputs;
  return record;
}

StatusOr<ParsedRecord> parse_record(const nlohmann::json& j) {
  ParsedRecord r;
  try {
    ASSIGN_OR_RETURN(r.request, request_from_json(j.at("request")));
    const auto& m = j.at("model");
    r.model.id = m.at("id").get<std::string>();
    r.model.sha256 = m.at("sha256").get<std::string>();
    r.model.source = m.value("source", std::string());
    r.model.demo = m.value("demo", false);
    r.backend = j.value("backend", std::string());
    r.index = j.at("index").get<int>();
    r.steps_done = j.at("steps_done").get<int>();
    ASSIGN_OR_RETURN(r.stop_reason, parse_stop_reason(j.at("stop_reason").get<std::string>()));
    r.files.png = j.value("png", std::string());
    r.files.png_sha256 = j.value("png_sha256", std::string());
    r.files.pixels_sha256 = j.at("pixels_sha256").get<std::string>();
    r.files.width = j.value("width", 0);
    r.files.height = j.value("height", 0);
    r.response = j.at("response").is_number() ? j["response"].get<double>() : NAN;
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(std::string("malformed record: ") + e.what());
  }
  if (r.index < 0 || r.index >= r.request.count) {
    return invalid_argument("record: index " + std::to_string(r.index) +
                            " is outside its batch of " + std::to_string(r.request.count));
  }
  try {
    const auto seed = j.at("seed").get<std::uint64_t>();
    if (seed != r.request.seed + static_cast<std::uint64_t>(r.index)) {
      return invalid_argument("record: seed " + std::to_string(seed) +
                              " is not the request's seed + index (" +
                              std::to_string(r.request.seed + r.index) + ")");
    }
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(std::string("record: bad or missing seed: ") + e.what());
  }
  if (r.steps_done < 0 || r.steps_done > r.request.steps) {
    return invalid_argument("record: steps_done is outside 0..steps");
  }
  return r;
}

}  // namespace stimloop::synthesis
