// Non-finite numbers never reach a client: a model whose every weight is finite but whose
// responses overflow float answers every RPC with an error naming the problem, never a NaN or
// infinity (which JSON would print as null).
#include <catch2/catch.hpp>
#include <cmath>

#include "models/demo_model.h"
#include "tests/integration/server_fixture.h"
#include "tests/support/keras_writer.h"
#include "tests/support/test_data.h"

using namespace stimloop;
using namespace stimloop::testing;
namespace v1 = stimloop::v1;
using Catch::Matchers::Contains;

namespace {

// The demo model with a readout so large that any positive activation overflows to infinity.
std::string write_overflowing_model(const std::string& dir) {
  KerasGraph graph = build_demo_graph();
  bool found = false;
  for (KerasLayer& layer : graph.layers) {
    if (layer.type != KerasLayerType::kDense) continue;
    for (float& w : layer.vars[0].values) w = 3e38f;
    if (layer.vars.size() > 1) {
      for (float& b : layer.vars[1].values) b = 3e38f;
    }
    found = true;
  }
  REQUIRE(found);
  const std::string path = dir + "/overflow.keras";
  REQUIRE(test::write_keras_file(path, graph).ok());
  return path;
}

client::CallOptions timed() {
  client::CallOptions call;
  call.timeout = std::chrono::seconds(60);
  return call;
}

}  // namespace

TEST_CASE("responses and gradients that are not finite are errors, never values",
          "[nonfinite][service]") {
  const std::string dir = test::scratch_dir("nonfinite-models");
  write_overflowing_model(dir);
  auto options = TestServer::default_options();
  options.model_dirs = {dir};
  auto server = TestServer::start(options);
  auto client = server->client();
  const v1::Image image = client::raw_image(test_pixels(3), 112, 112);

  v1::PredictRequest predict;
  predict.add_model_ids("overflow");
  *predict.add_images() = image;
  auto predicted = client->predict(predict, timed());
  INFO(predicted.status().to_string());
  REQUIRE_FALSE(predicted.ok());
  CHECK(predicted.status().code() == StatusCode::kInternal);
  CHECK_THAT(predicted.status().message(), Contains("NaN or infinite"));
  CHECK_THAT(predicted.status().message(), Contains("overflow"));

  v1::InputGradientRequest gradient;
  gradient.set_model_id("overflow");
  *gradient.add_images() = image;
  auto gradients = client->input_gradient(gradient, timed());
  INFO(gradients.status().to_string());
  REQUIRE_FALSE(gradients.ok());
  CHECK(gradients.status().code() == StatusCode::kInternal);
  CHECK_THAT(gradients.status().message(), Contains("NaN or infinite"));

  v1::SynthesizeRequest synthesize;
  synthesize.set_model_id("overflow");
  synthesize.mutable_spec()->set_objective(v1::MAX);
  synthesize.mutable_spec()->set_steps(2);
  int stimuli = 0;
  const Status synthesized = client->synthesize(
      synthesize,
      [&](const v1::SynthesisEvent& e) {
        if (e.kind() == v1::SynthesisEvent::STIMULUS) ++stimuli;
      },
      timed());
  INFO(synthesized.to_string());
  CHECK_FALSE(synthesized.ok());
  CHECK(stimuli == 0);
}
