// Bad requests against one running server: each gets its specific status code and a message that
// names the offending field, and the server keeps answering good requests after every one.
// Every bad request is a known-good request with one thing changed, so the change is the cause.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/image_io.h"
#include "tests/integration/server_fixture.h"

namespace stimloop::testing {
namespace {

namespace v1 = ::stimloop::v1;
using client::StimloopClient;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// What a bad request came back with; the Synthesize fields count the events that arrived.
struct Outcome {
  Status status;
  int events = 0;
  int accepted = 0;
  int stimuli = 0;
};

struct BadCase {
  std::string name;
  StatusCode code;
  std::string field;  // the message must hold this (the field the error is about)
  std::function<Outcome(StimloopClient&)> run;
  // A more precise field name some messages carry (e.g. "model_ids[1]"), checked separately.
  std::string strict_field = {};
};

client::CallOptions timed(std::chrono::seconds timeout = std::chrono::seconds(30)) {
  client::CallOptions call;
  call.timeout = timeout;
  return call;
}

v1::Image good_image(int seed = 0) { return client::raw_image(test_pixels(seed), 112, 112); }

// The PNG chunk CRC (ISO 3309 / zlib crc32), so hand-made chunks are well formed.
std::uint32_t crc32(const std::string& bytes) {
  std::uint32_t crc = 0xffffffffu;
  for (unsigned char b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xffffffffu;
}

void put_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_chunk(std::string& out, const std::string& type, const std::string& data) {
  put_be32(out, static_cast<std::uint32_t>(data.size()));
  out += type + data;
  put_be32(out, crc32(type + data));
}

// A PNG whose IHDR claims width x height 8-bit RGB pixels, with no image data behind it: a
// decompression bomb's header (the server must refuse it before allocating the image).
std::string png_claiming(std::uint32_t width, std::uint32_t height) {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_be32(ihdr, width);
  put_be32(ihdr, height);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // depth 8, RGB, deflate, no filter, no interlace
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IEND", "");
  return png;
}

v1::Image png_image(int height, int width, int seed = 0) {
  Rgb8Image image{height, width, test_pixels(seed, height, width)};
  auto bytes = encode_png(image);
  REQUIRE(bytes.ok());
  v1::Image out;
  out.set_encoding(v1::PNG);
  out.set_data(std::string(bytes->begin(), bytes->end()));
  return out;
}

v1::PredictRequest good_predict_request() {
  v1::PredictRequest r;
  r.add_model_ids("demo");
  *r.add_images() = good_image(0);
  return r;
}

v1::InputGradientRequest good_gradient_request() {
  v1::InputGradientRequest r;
  r.set_model_id("demo");
  *r.add_images() = good_image(0);
  r.set_output_index(0);
  return r;
}

v1::SynthesizeRequest good_synthesize_request(const std::string& model = "demo") {
  v1::SynthesizeRequest r;
  r.set_model_id(model);
  r.mutable_spec()->set_objective(v1::MAX);
  r.mutable_spec()->set_steps(5);
  r.mutable_spec()->set_seed(1);
  return r;
}

Outcome run_synthesize(StimloopClient& c, const v1::SynthesizeRequest& r) {
  Outcome out;
  out.status = c.synthesize(
      r,
      [&](const v1::SynthesisEvent& e) {
        ++out.events;
        if (e.kind() == v1::SynthesisEvent::ACCEPTED) ++out.accepted;
        if (e.kind() == v1::SynthesisEvent::STIMULUS) ++out.stimuli;
      },
      timed());
  return out;
}

// A case from the good request of each RPC with one change.
BadCase predict_case(std::string name, StatusCode code, std::string field,
                     std::function<void(v1::PredictRequest&)> change) {
  v1::PredictRequest r = good_predict_request();
  change(r);
  return {std::move(name), code, std::move(field),
          [r](StimloopClient& c) { return Outcome{c.predict(r, timed()).status()}; }};
}

BadCase gradient_case(std::string name, StatusCode code, std::string field,
                      std::function<void(v1::InputGradientRequest&)> change) {
  v1::InputGradientRequest r = good_gradient_request();
  change(r);
  return {std::move(name), code, std::move(field),
          [r](StimloopClient& c) { return Outcome{c.input_gradient(r, timed()).status()}; }};
}

BadCase synthesize_case(std::string name, StatusCode code, std::string field,
                        std::function<void(v1::SynthesizeRequest&)> change,
                        const std::string& model = "demo") {
  v1::SynthesizeRequest r = good_synthesize_request(model);
  change(r);
  return {std::move(name), code, std::move(field),
          [r](StimloopClient& c) { return run_synthesize(c, r); }};
}

void require_good_predict(StimloopClient& c) {
  auto response = c.predict(good_predict_request(), timed());
  INFO("good Predict: " << response.status().to_string());
  REQUIRE(response.ok());
  REQUIRE(response->results_size() == 1);
  REQUIRE(response->results(0).responses_size() == 1);
  REQUIRE(std::isfinite(response->results(0).responses(0)));
}

std::vector<BadCase> bad_cases() {
  using SC = StatusCode;
  std::vector<BadCase> cases;
  auto add = [&](BadCase c) { cases.push_back(std::move(c)); };
  auto should_name = [&](std::string field) { cases.back().strict_field = std::move(field); };

  // ---- Predict
  add(predict_case("Predict: no images", SC::kInvalidArgument, "images",
                   [](auto& r) { r.clear_images(); }));
  add(predict_case("Predict: no model ids", SC::kInvalidArgument, "model_ids",
                   [](auto& r) { r.clear_model_ids(); }));
  add(predict_case("Predict: unknown model id", SC::kNotFound, "no_such_model",
                   [](auto& r) { r.add_model_ids("no_such_model"); }));
  should_name("model_ids[1]");
  add(predict_case(
      "Predict: raw image of the wrong width", SC::kInvalidArgument, "images[1]",
      [](auto& r) { *r.add_images() = client::raw_image(test_pixels(1, 112, 111), 112, 111); }));
  add(predict_case("Predict: raw image of the wrong height", SC::kInvalidArgument, "images[0]",
                   [](auto& r) {
                     *r.mutable_images(0) = client::raw_image(test_pixels(1, 100, 112), 100, 112);
                   }));
  add(predict_case("Predict: raw image one byte short", SC::kInvalidArgument, "images[1].data",
                   [](auto& r) {
                     v1::Image image = good_image(1);
                     image.mutable_data()->pop_back();
                     *r.add_images() = image;
                   }));
  add(predict_case("Predict: raw image one byte long", SC::kInvalidArgument, "images[0].data",
                   [](auto& r) { r.mutable_images(0)->mutable_data()->push_back('\0'); }));
  add(predict_case("Predict: PNG that is garbage", SC::kInvalidArgument, "images[0].data",
                   [](auto& r) {
                     r.mutable_images(0)->set_encoding(v1::PNG);
                     r.mutable_images(0)->set_data("this is not a PNG file, just some bytes");
                   }));
  add(predict_case("Predict: PNG header claiming 100000x100000", SC::kInvalidArgument,
                   "images[0].data: PNG claims 100000x100000", [](auto& r) {
                     r.mutable_images(0)->Clear();
                     r.mutable_images(0)->set_encoding(v1::PNG);
                     r.mutable_images(0)->set_data(png_claiming(100000, 100000));
                   }));
  add(predict_case("Predict: PNG cut off after its header", SC::kInvalidArgument, "decode",
                   [](auto& r) {
                     v1::Image image = png_image(112, 112);
                     image.mutable_data()->resize(image.data().size() / 2);
                     *r.mutable_images(0) = image;
                   }));
  should_name("images[0]");
  add(predict_case("Predict: PNG of the wrong size", SC::kInvalidArgument, "images[1]",
                   [](auto& r) { *r.add_images() = png_image(16, 16); }));
  add(predict_case("Predict: PNG whose width/height disagree with its size", SC::kInvalidArgument,
                   "images[0]", [](auto& r) {
                     v1::Image image = png_image(112, 112);
                     image.set_width(112);
                     image.set_height(56);
                     *r.mutable_images(0) = image;
                   }));
  add(predict_case(
      "Predict: encoding enum value 7", SC::kInvalidArgument, "images[0].encoding",
      [](auto& r) { r.mutable_images(0)->set_encoding(static_cast<v1::ImageEncoding>(7)); }));
  add(predict_case(
      "Predict: encoding left unspecified", SC::kInvalidArgument, "images[0].encoding",
      [](auto& r) { r.mutable_images(0)->set_encoding(v1::IMAGE_ENCODING_UNSPECIFIED); }));
  add(predict_case("Predict: 257 images", SC::kInvalidArgument, "images", [](auto& r) {
    while (r.images_size() < 257) *r.add_images() = r.images(0);
  }));
  add(predict_case("Predict: 65 models", SC::kInvalidArgument, "model_ids", [](auto& r) {
    while (r.model_ids_size() < 65) r.add_model_ids("demo");
  }));
  add(predict_case("Predict: deadline_ms negative", SC::kInvalidArgument, "deadline_ms",
                   [](auto& r) { r.set_deadline_ms(-1); }));
  add(predict_case("Predict: deadline_ms NaN", SC::kInvalidArgument, "deadline_ms",
                   [](auto& r) { r.set_deadline_ms(kNaN); }));
  add(predict_case("Predict: deadline_ms infinite", SC::kInvalidArgument, "deadline_ms",
                   [](auto& r) { r.set_deadline_ms(kInf); }));
  add(predict_case("Predict: deadline_ms over an hour", SC::kInvalidArgument, "deadline_ms",
                   [](auto& r) { r.set_deadline_ms(3'600'000.5); }));
  add(predict_case("Predict: priority 99", SC::kInvalidArgument, "priority",
                   [](auto& r) { r.set_priority(static_cast<v1::Priority>(99)); }));

  // ---- InputGradient
  add(gradient_case("InputGradient: output_index 1 on a 1-output model", SC::kOutOfRange,
                    "output_index", [](auto& r) { r.set_output_index(1); }));
  add(gradient_case("InputGradient: output_index -1", SC::kOutOfRange, "output_index",
                    [](auto& r) { r.set_output_index(-1); }));
  add(gradient_case("InputGradient: output_seed of the wrong length", SC::kInvalidArgument,
                    "output_seed", [](auto& r) {
                      r.set_model_id("demo_population");
                      for (float w : {1.0f, 0.5f, 0.25f}) r.add_output_seed(w);
                    }));
  add(gradient_case("InputGradient: output_seed holding NaN", SC::kInvalidArgument,
                    "output_seed[2]", [](auto& r) {
                      r.set_model_id("demo_population");
                      for (float w : {1.0f, 0.5f, std::nanf(""), 0.25f}) r.add_output_seed(w);
                    }));
  add(gradient_case("InputGradient: both output_index and output_seed", SC::kInvalidArgument,
                    "output_index", [](auto& r) {
                      r.set_model_id("demo_population");
                      r.set_output_index(2);
                      for (float w : {1.0f, 0.0f, 0.0f, 0.0f}) r.add_output_seed(w);
                    }));
  add(gradient_case("InputGradient: 65 images", SC::kInvalidArgument, "images", [](auto& r) {
    while (r.images_size() < 65) *r.add_images() = r.images(0);
  }));
  add(gradient_case("InputGradient: no images", SC::kInvalidArgument, "images",
                    [](auto& r) { r.clear_images(); }));
  add(gradient_case("InputGradient: unknown model id", SC::kNotFound, "no_such_model",
                    [](auto& r) { r.set_model_id("no_such_model"); }));
  should_name("model_id");
  add(gradient_case("InputGradient: raw image one byte short", SC::kInvalidArgument,
                    "images[0].data",
                    [](auto& r) { r.mutable_images(0)->mutable_data()->pop_back(); }));

  // ---- Synthesize
  add(synthesize_case("Synthesize: unknown model id", SC::kNotFound, "no_such_model",
                      [](auto& r) { r.set_model_id("no_such_model"); }));
  should_name("model_id");
  add(synthesize_case("Synthesize: objective unspecified", SC::kInvalidArgument, "spec.objective",
                      [](auto& r) { r.mutable_spec()->set_objective(v1::OBJECTIVE_UNSPECIFIED); }));
  add(synthesize_case("Synthesize: 2,000,000 steps", SC::kInvalidArgument, "steps",
                      [](auto& r) { r.mutable_spec()->set_steps(2'000'000); }));
  add(synthesize_case("Synthesize: -5 steps", SC::kInvalidArgument, "steps",
                      [](auto& r) { r.mutable_spec()->set_steps(-5); }));
  add(synthesize_case("Synthesize: count 5000", SC::kInvalidArgument, "count",
                      [](auto& r) { r.mutable_spec()->set_count(5000); }));
  add(synthesize_case("Synthesize: step_size NaN", SC::kInvalidArgument, "spec.step_size",
                      [](auto& r) { r.mutable_spec()->set_step_size(kNaN); }));
  add(synthesize_case("Synthesize: epsilon infinite", SC::kInvalidArgument, "spec.epsilon",
                      [](auto& r) { r.mutable_spec()->set_epsilon(kInf); }));
  add(synthesize_case("Synthesize: output_index 7 on a 1-output model", SC::kOutOfRange,
                      "output-index", [](auto& r) { r.mutable_spec()->set_output_index(7); }));
  should_name("spec");
  add(synthesize_case("Synthesize: output_index -1", SC::kOutOfRange, "output-index",
                      [](auto& r) { r.mutable_spec()->set_output_index(-1); }));
  add(synthesize_case(
      "Synthesize: POPULATION target out of range", SC::kOutOfRange, "targets",
      [](auto& r) {
        r.mutable_spec()->set_objective(v1::POPULATION);
        r.mutable_spec()->add_targets(1);
        r.mutable_spec()->add_targets(9);
      },
      "demo_population"));
  should_name("spec");
  add(synthesize_case("Synthesize: POPULATION on a 1-output model", SC::kInvalidArgument,
                      "population", [](auto& r) {
                        r.mutable_spec()->set_objective(v1::POPULATION);
                        r.mutable_spec()->add_targets(0);
                      }));
  should_name("spec");
  add(synthesize_case("Synthesize: CHANNEL with layer 99", SC::kOutOfRange, "layer", [](auto& r) {
    r.mutable_spec()->set_objective(v1::CHANNEL);
    r.mutable_spec()->set_layer(99);
    r.mutable_spec()->set_channel(0);
  }));
  should_name("spec");
  add(synthesize_case("Synthesize: ADVERSARIAL without init_image", SC::kInvalidArgument, "init",
                      [](auto& r) { r.mutable_spec()->set_objective(v1::ADVERSARIAL); }));
  add(synthesize_case("Synthesize: init_image of the wrong size", SC::kInvalidArgument,
                      "spec.init_image", [](auto& r) {
                        r.mutable_spec()->set_objective(v1::ADVERSARIAL);
                        *r.mutable_spec()->mutable_init_image() =
                            client::raw_image(test_pixels(2, 64, 64), 64, 64);
                      }));
  add(synthesize_case("Synthesize: direction given for MAX", SC::kInvalidArgument, "spec.direction",
                      [](auto& r) { r.mutable_spec()->set_direction(v1::DOWN); }));
  add(synthesize_case("Synthesize: PGD method with MAX", SC::kInvalidArgument, "pgd",
                      [](auto& r) { r.mutable_spec()->set_method(v1::PGD); }));
  add(synthesize_case("Synthesize: jitter with the cowley2026 method", SC::kInvalidArgument,
                      "jitter", [](auto& r) {
                        r.mutable_spec()->set_method(v1::COWLEY2026);
                        r.mutable_spec()->set_jitter(2);
                      }));
  add(synthesize_case("Synthesize: progress_every negative", SC::kInvalidArgument, "progress_every",
                      [](auto& r) { r.set_progress_every(-1); }));
  add(synthesize_case("Synthesize: snapshot_every negative", SC::kInvalidArgument, "snapshot_every",
                      [](auto& r) { r.set_snapshot_every(-3); }));
  add(synthesize_case("Synthesize: display_size 100000", SC::kInvalidArgument, "display-size",
                      [](auto& r) { r.mutable_spec()->set_display_size(100000); }));
  add(synthesize_case("Synthesize: image_blur_every -7", SC::kInvalidArgument,
                      "spec.image_blur_every",
                      [](auto& r) { r.mutable_spec()->set_image_blur_every(-7); }));
  add(synthesize_case("Synthesize: priority 99", SC::kInvalidArgument, "priority",
                      [](auto& r) { r.set_priority(static_cast<v1::Priority>(99)); }));
  add(synthesize_case("Synthesize: deadline_ms negative", SC::kInvalidArgument, "deadline_ms",
                      [](auto& r) { r.set_deadline_ms(-5); }));

  // ---- Larger than the server's 32 MiB receive limit (below the client's 64 MiB send limit):
  // gRPC itself refuses it.
  add(predict_case("Predict: a 40 MB message", SC::kResourceExhausted, "larger than max",
                   [](auto& r) { r.mutable_images(0)->mutable_data()->resize(40'000'000, 'x'); }));
  return cases;
}

}  // namespace

TEST_CASE("bad requests get their specific code and name the field; the server stays up",
          "[integration][bad-requests]") {
  auto ts = TestServer::start();
  auto c = ts->client();
  REQUIRE(c->wait_until_serving(std::chrono::seconds(10)).ok());

  // The good requests every case starts from do succeed.
  require_good_predict(*c);
  {
    auto g = c->input_gradient(good_gradient_request());
    INFO(g.status().to_string());
    REQUIRE(g.ok());
    const Outcome s = run_synthesize(*c, good_synthesize_request());
    INFO(s.status.to_string());
    REQUIRE(s.status.ok());
    REQUIRE(s.accepted == 1);
    REQUIRE(s.stimuli == 1);
  }

  const std::vector<BadCase> cases = bad_cases();
  REQUIRE(cases.size() >= 30);
  for (const BadCase& bad : cases) {
    INFO("case: " << bad.name);
    const Outcome out = bad.run(*c);
    INFO("got: " << out.status.to_string());
    CHECK(out.status.code() == bad.code);
    CHECK_THAT(out.status.message(), Catch::Matchers::Contains(bad.field));
    // A rejected synthesis is rejected before it is queued: no ACCEPTED, and no stimulus.
    CHECK(out.stimuli == 0);
    CHECK(out.accepted == 0);
    require_good_predict(*c);
  }
}

TEST_CASE("a full queue gives RESOURCE_EXHAUSTED; other priorities still run",
          "[integration][bad-requests]") {
  auto options = TestServer::default_options();
  options.max_queue = 1;
  auto ts = TestServer::start(options);
  auto c = ts->client();
  auto long_client = ts->client();

  std::mutex mutex;
  grpc::ClientContext* long_context = nullptr;
  std::atomic<bool> accepted{false};
  std::atomic<int> long_stimuli{0};
  Status long_status = internal_error("not finished");

  v1::SynthesizeRequest long_request = good_synthesize_request();
  long_request.set_priority(v1::CAMPAIGN);
  long_request.mutable_spec()->set_steps(100000);
  long_request.set_progress_every(1000);
  long_request.set_deadline_ms(30'000);  // a backstop only: the test cancels it

  client::CallOptions call;
  call.on_context = [&](grpc::ClientContext* context) {
    std::lock_guard lock(mutex);
    long_context = context;
  };
  std::thread runner([&] {
    Status s = long_client->synthesize(
        long_request,
        [&](const v1::SynthesisEvent& e) {
          if (e.kind() == v1::SynthesisEvent::ACCEPTED) accepted = true;
          if (e.kind() == v1::SynthesisEvent::STIMULUS) ++long_stimuli;
        },
        call);
    std::lock_guard lock(mutex);
    long_status = s;
  });
  // Cancels the long run and joins, also when a REQUIRE below throws.
  struct Joiner {
    std::function<void()> f;
    ~Joiner() { f(); }
  } joiner{[&] {
    {
      std::lock_guard lock(mutex);
      if (long_context != nullptr) long_context->TryCancel();
    }
    if (runner.joinable()) runner.join();
  }};

  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!accepted && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(accepted);

  v1::SynthesizeRequest second = good_synthesize_request();
  second.set_priority(v1::CAMPAIGN);
  const Outcome rejected = run_synthesize(*c, second);
  INFO(rejected.status.to_string());
  CHECK(rejected.status.code() == StatusCode::kResourceExhausted);
  CHECK_THAT(rejected.status.message(), Catch::Matchers::Contains("queue"));
  CHECK(rejected.accepted == 0);
  CHECK(rejected.stimuli == 0);

  v1::PredictRequest interactive = good_predict_request();
  interactive.set_priority(v1::INTERACTIVE);
  auto predicted = c->predict(interactive, timed());
  INFO(predicted.status().to_string());
  CHECK(predicted.ok());

  const auto cancelled_at = std::chrono::steady_clock::now();
  joiner.f();
  const double cancel_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - cancelled_at)
          .count();
  INFO("long run: " << long_status.to_string());
  CHECK(long_status.code() == StatusCode::kCancelled);
  CHECK(long_stimuli == 0);
  CHECK(cancel_ms < 5000);

  // Once the long run is gone (the engine notices the cancellation within a step), the
  // CAMPAIGN queue takes work again.
  Outcome again = run_synthesize(*c, second);
  const auto retry_until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (again.status.code() == StatusCode::kResourceExhausted &&
         std::chrono::steady_clock::now() < retry_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    again = run_synthesize(*c, second);
  }
  INFO(again.status.to_string());
  CHECK(again.status.ok());
  CHECK(again.stimuli == 1);
}

// The precise field names: the index of an unknown model, the image whose PNG body is cut off,
// the spec prefix on model-dependent checks.
TEST_CASE("bad requests: messages name the precise field", "[integration][bad-requests]") {
  auto ts = TestServer::start();
  auto c = ts->client();
  for (const BadCase& bad : bad_cases()) {
    if (bad.strict_field.empty()) continue;
    INFO("case: " << bad.name);
    const Outcome out = bad.run(*c);
    INFO("got: " << out.status.to_string());
    CHECK(out.status.code() == bad.code);
    CHECK_THAT(out.status.message(), Catch::Matchers::Contains(bad.strict_field));
  }
}

// A job frees its queue slot before it delivers its result, so a client that sends its next
// request as soon as it has the last response never finds the slot still taken: with
// --max-queue 1, one request at a time is never refused.
TEST_CASE("one request at a time never fills a queue of one", "[integration][bad-requests]") {
  auto options = TestServer::default_options();
  options.max_queue = 1;
  auto ts = TestServer::start(options);
  auto c = ts->client();
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    auto response = c->predict(good_predict_request(), timed());
    if (response.status().code() == StatusCode::kResourceExhausted) ++refused;
    INFO(response.status().to_string());
    REQUIRE((response.ok() || response.status().code() == StatusCode::kResourceExhausted));
  }
  CHECK(refused == 0);
}

}  // namespace stimloop::testing
