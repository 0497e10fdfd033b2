#include "client/cli/remote.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace stimloop::cli {
namespace {

namespace v1 = ::stimloop::v1;

v1::Priority to_priority(const std::string& name) {
  if (name == "rig") return v1::RIG;
  if (name == "campaign") return v1::CAMPAIGN;
  return v1::INTERACTIVE;
}

ModelInfo from_proto(const v1::ModelInfo& m) {
  ModelInfo info;
  info.id = m.id();
  info.source = "server";
  info.sha256 = m.sha256();
  info.demo = m.demo();
  info.description = m.description();
  info.in_h = m.input_height();
  info.in_w = m.input_width();
  info.in_c = m.input_channels();
  info.num_outputs = m.num_outputs();
  info.filters.assign(m.filters().begin(), m.filters().end());
  info.parameters = m.parameters();
  info.macs_per_image = m.macs_per_image();
  return info;
}

// The request as a wire spec, every value explicit (the server's zero-means-default rule never
// applies to a request the CLI built).
v1::SynthesisSpec to_spec(const synthesis::SynthesisRequest& r, const ModelInfo& model) {
  using namespace synthesis;
  v1::SynthesisSpec s;
  switch (r.objective) {
    case ObjectiveKind::kMax:
      s.set_objective(v1::MAX);
      break;
    case ObjectiveKind::kMin:
      s.set_objective(v1::MIN);
      break;
    case ObjectiveKind::kPopulation:
      s.set_objective(v1::POPULATION);
      break;
    case ObjectiveKind::kChannel:
      s.set_objective(v1::CHANNEL);
      break;
    case ObjectiveKind::kAdversarial:
      s.set_objective(v1::ADVERSARIAL);
      break;
  }
  switch (r.method) {
    case MethodKind::kCowley2026:
      s.set_method(v1::COWLEY2026);
      break;
    case MethodKind::kAdam:
      s.set_method(v1::ADAM);
      break;
    case MethodKind::kPgd:
      s.set_method(v1::PGD);
      break;
  }
  s.set_output_index(r.output_index);
  s.set_steps(r.steps);
  s.set_step_size(r.step_size);
  s.set_seed(r.seed);
  s.set_count(r.count);
  s.set_grayscale(r.grayscale);
  switch (r.init) {
    case InitKind::kNoise:
      s.set_init(v1::NOISE);
      break;
    case InitKind::kGray:
      s.set_init(v1::GRAY);
      break;
    case InitKind::kImage:
      s.set_init(v1::IMAGE);
      s.mutable_init_image()->set_encoding(v1::RAW_RGB8);
      s.mutable_init_image()->set_height(model.in_h);
      s.mutable_init_image()->set_width(model.in_w);
      s.mutable_init_image()->set_data(std::string(r.init_pixels.begin(), r.init_pixels.end()));
      break;
  }
  for (int t : r.targets) s.add_targets(t);
  switch (r.mode) {
    case PopulationMode::kOneHot:
      s.set_population_mode(v1::ONE_HOT);
      break;
    case PopulationMode::kContrast:
      s.set_population_mode(v1::CONTRAST);
      break;
    case PopulationMode::kMatch:
      s.set_population_mode(v1::MATCH);
      break;
  }
  for (double v : r.target_responses) s.add_target_responses(v);
  s.set_layer(r.layer);
  s.set_channel(r.channel);
  s.set_epsilon(r.epsilon);
  s.set_norm(r.norm == Norm::kL2 ? v1::L2 : v1::LINF);
  if (r.objective == ObjectiveKind::kAdversarial) {
    if (r.direction == Direction::kTarget) {
      s.set_has_target_response(true);
      s.set_target_response(r.target_response);
    } else {
      s.set_direction(r.direction == Direction::kDown ? v1::DOWN : v1::UP);
    }
  }
  s.set_gradient_blur_sigma(r.gradient_blur_sigma);
  s.set_image_blur_every(r.image_blur_every == 0 ? -1 : r.image_blur_every);
  s.set_image_blur_sigma(r.image_blur_sigma);
  s.set_beta1(r.beta1);
  s.set_beta2(r.beta2);
  s.set_jitter(r.jitter);
  s.set_tv_weight(r.tv_weight);
  s.set_l2_weight(r.l2_weight);
  s.set_rms_contrast(r.rms_contrast);
  s.set_diversity_weight(r.diversity_weight);
  s.set_trajectory_every(r.trajectory_every);
  s.set_display_size(r.display_size);
  return s;
}

}  // namespace

StatusOr<std::unique_ptr<client::StimloopClient>> connect_remote(const CommonOptions& common) {
  client::ClientOptions o;
  o.address = common.remote.server;
  o.tls_ca = common.remote.tls_ca;
  o.tls_cert = common.remote.tls_cert;
  o.tls_key = common.remote.tls_key;
  o.tls_server_name = common.remote.tls_server_name;
  o.token_file = common.remote.token_file;
  return client::StimloopClient::connect(o);
}

StatusOr<std::shared_ptr<const Model>> remote_model(client::StimloopClient& client,
                                                    const std::string& id) {
  ASSIGN_OR_RETURN(v1::ModelInfo info, client.get_model(id));
  auto model = std::make_shared<Model>();
  model->info = from_proto(info);
  return std::shared_ptr<const Model>(std::move(model));
}

StatusOr<std::vector<std::shared_ptr<const Model>>> remote_models(client::StimloopClient& client) {
  ASSIGN_OR_RETURN(v1::ListModelsResponse list, client.list_models());
  std::vector<std::shared_ptr<const Model>> models;
  for (const auto& m : list.models()) {
    auto model = std::make_shared<Model>();
    model->info = from_proto(m);
    models.push_back(std::move(model));
  }
  return models;
}

StatusOr<RemotePrediction> remote_predict(client::StimloopClient& client,
                                          const CommonOptions& common, const ModelInfo& model,
                                          const std::vector<std::uint8_t>& raw, int n) {
  v1::PredictRequest request;
  request.add_model_ids(model.id);
  request.set_priority(to_priority(common.remote.priority));
  const std::size_t size = static_cast<std::size_t>(model.in_h) * model.in_w * 3;
  for (int i = 0; i < n; ++i) {
    *request.add_images() = client::raw_image(
        std::vector<std::uint8_t>(raw.begin() + i * size, raw.begin() + (i + 1) * size), model.in_h,
        model.in_w);
  }
  ASSIGN_OR_RETURN(v1::PredictResponse response, client.predict(request));
  if (response.results_size() != 1) return internal_error("server returned no result");
  RemotePrediction out;
  out.responses.assign(response.results(0).responses().begin(),
                       response.results(0).responses().end());
  out.backend = response.backend();
  return out;
}

StatusOr<std::vector<SynthesisOutput>> remote_synthesis_job(
    client::StimloopClient& client, const CommonOptions& common,
    const synthesis::SynthesisRequest& request, const Model& model, bool show_progress) {
  v1::SynthesizeRequest wire;
  wire.set_model_id(model.info.id);
  *wire.mutable_spec() = to_spec(request, model.info);
  wire.set_priority(to_priority(common.remote.priority));
  wire.set_deadline_ms(request.deadline_ms);
  wire.set_result_encoding(v1::PNG);
  const bool tty = show_progress && isatty(STDERR_FILENO);
  std::vector<SynthesisOutput> outputs;
  Status parse_error = Status::Ok();
  Status status = client.synthesize(wire, [&](const v1::SynthesisEvent& e) {
    if (e.kind() == v1::SynthesisEvent::PROGRESS && tty) {
      double best = -1e300;
      for (double v : e.best_response()) best = std::isfinite(v) ? std::max(best, v) : best;
      std::fprintf(stderr, "\r%s (server): step %d/%d  best response %.4g   ",
                   model.info.id.c_str(), e.steps_done(), e.steps(), best);
    }
    if (e.kind() != v1::SynthesisEvent::STIMULUS) return;
    SynthesisOutput out;
    const auto& st = e.stimulus();
    out.stimulus.index = st.index();
    out.stimulus.seed = st.seed();
    out.stimulus.response = st.response();
    out.stimulus.outputs.assign(st.outputs().begin(), st.outputs().end());
    out.png.assign(st.image().data().begin(), st.image().data().end());
    out.record = nlohmann::json::parse(st.record_json(), nullptr, false);
    if (out.record.is_discarded()) {
      parse_error = data_loss("the server sent a malformed record");
      return;
    }
    // The server only saw the pixels; the record names the file as the user gave it, so that
    // `stimloop replay` finds it again.
    if (request.init == synthesis::InitKind::kImage) {
      out.record["request"]["init_image"] = request.init_image;
    }
    outputs.push_back(std::move(out));
  });
  if (tty) std::fprintf(stderr, "\n");
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(parse_error);
  return outputs;
}

}  // namespace stimloop::cli
