// The CPU backend as callers see it: results against the double reference, independence from
// batch composition, chunking, argument checks, determinism and thread-count independence.
#include <omp.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "kernels/backend.h"
#include "tests/support/reference_network.h"

namespace stimloop {
namespace {

using test::random_floats;
using test::to_double;

// Three small chains: the compact-model pattern with a Dense readout, a chain ending in a
// spatial map (49 outputs per image), and the shared-model readout (1x1 mixing, then one
// full-size depthwise window per output).
Network random_network(int which) {
  switch (which) {
    case 0:
      return test::RandomNetworkBuilder(17, 23, 3, 100)
          .conv2d(5, 5, 1, true, true)
          .depthwise(5, 2, true, false)
          .pointwise(4, true)
          .dense(3)
          .network();
    case 1:
      return test::RandomNetworkBuilder(16, 16, 3, 101)
          .conv2d(6, 3, 2, false, true, /*bias=*/false)
          .depthwise(3, 1, true, true)
          .pointwise(1, false)
          .network();
    default:
      return test::RandomNetworkBuilder(12, 12, 3, 102)
          .conv2d(4, 5, 1, true, true)
          .pointwise(6, false)
          .depthwise(12, 1, false, false)
          .network();
  }
}

struct Uploaded {
  std::unique_ptr<Backend> backend;
  std::shared_ptr<const Network> net;
  std::unique_ptr<ResidentNetwork> resident;
};

Uploaded upload(Network net) {
  Uploaded u{make_cpu_backend(), std::make_shared<const Network>(std::move(net)), nullptr};
  auto r = u.backend->upload(u.net);
  REQUIRE(r.ok());
  u.resident = std::move(r).value();
  return u;
}

struct Run {
  std::vector<float> outputs, d_images;
};

Run forward(ResidentNetwork& rn, const std::vector<float>& images, int n) {
  Run r;
  r.outputs.resize(n * rn.network().num_outputs());
  const Status s = rn.forward(images, n, r.outputs);
  INFO(s.to_string());
  REQUIRE(s.ok());
  return r;
}

Run gradient(ResidentNetwork& rn, const std::vector<float>& images, int n,
             const std::vector<float>& seed) {
  Run r;
  r.outputs.resize(n * rn.network().num_outputs());
  r.d_images.resize(images.size());
  const Status s = rn.input_gradient(images, n, seed, r.outputs, r.d_images);
  INFO(s.to_string());
  REQUIRE(s.ok());
  return r;
}

template <typename T>
std::vector<T> part(const std::vector<T>& v, std::int64_t i, std::int64_t size) {
  return {v.begin() + i * size, v.begin() + (i + 1) * size};
}

// Restores the OpenMP thread count on scope exit, so later tests run as configured.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(omp_get_max_threads()) {}
  ~ThreadCountGuard() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

}  // namespace

TEST_CASE("CPU backend matches the double reference", "[backend]") {
  const int which = GENERATE(0, 1, 2);
  const int n = GENERATE(1, 2, 5);
  CAPTURE(which, n);
  Uploaded u = upload(random_network(which));
  const std::int64_t out_size = u.net->num_outputs();
  std::mt19937 rng(200 + which * 10 + n);
  const auto images = random_floats(n * u.net->input_size(), -1, 1, rng);
  const auto seed = random_floats(n * out_size, -1, 1, rng);

  const Run fwd = forward(*u.resident, images, n);
  const Run grad = gradient(*u.resident, images, n, seed);
  const auto seed_d = to_double(seed);
  const auto ref = test::ref_network(*u.net, to_double(images), n, &seed_d);

  // Float kernels against double on the same float values: measured relative L2 errors are
  // ~3e-7; 1e-5 leaves a wide margin (see test_gradient_fd.cpp for the reasoning). The
  // element-wise bound (atol 2e-5 of the largest output) catches a single wrong element that
  // the L2 norm could dilute.
  const auto report =
      test::compare_close(fwd.outputs, ref.outputs, 2e-5 * test::max_abs(ref.outputs), 1e-5);
  INFO(report.describe());
  CHECK(report.ok());
  CHECK(test::relative_l2_error(fwd.outputs, ref.outputs) < 1e-5);
  // input_gradient's outputs are those of forward, bit for bit.
  CHECK(test::first_bitwise_difference(grad.outputs, fwd.outputs) == -1);
  const auto grad_report =
      test::compare_close(grad.d_images, ref.d_input, 2e-5 * test::max_abs(ref.d_input), 1e-5);
  INFO(grad_report.describe());
  CHECK(grad_report.ok());
  CHECK(test::relative_l2_error(grad.d_images, ref.d_input) < 1e-5);
}

TEST_CASE("CPU backend results do not depend on batch composition", "[backend]") {
  const int which = GENERATE(0, 1, 2);
  CAPTURE(which);
  Uploaded u = upload(random_network(which));
  const int n = 5;
  const std::int64_t in_size = u.net->input_size(), out_size = u.net->num_outputs();
  std::mt19937 rng(300 + which);
  const auto images = random_floats(n * in_size, -1, 1, rng);
  const auto seed = random_floats(n * out_size, -1, 1, rng);
  const Run batch = gradient(*u.resident, images, n, seed);
  const Run batch_fwd = forward(*u.resident, images, n);

  // Each image alone gives bitwise what it gave inside the batch.
  for (int i = 0; i < n; ++i) {
    CAPTURE(i);
    const auto image = part(images, i, in_size);
    const Run alone = gradient(*u.resident, image, 1, part(seed, i, out_size));
    CHECK(test::first_bitwise_difference(alone.outputs, part(batch.outputs, i, out_size)) == -1);
    CHECK(test::first_bitwise_difference(alone.d_images, part(batch.d_images, i, in_size)) == -1);
    CHECK(test::first_bitwise_difference(forward(*u.resident, image, 1).outputs,
                                         part(batch_fwd.outputs, i, out_size)) == -1);
  }

  // The batch in reverse order gives the same rows in reverse order.
  std::vector<float> reversed_images, reversed_seed;
  for (int i = n; i-- > 0;) {
    const auto img = part(images, i, in_size);
    const auto sd = part(seed, i, out_size);
    reversed_images.insert(reversed_images.end(), img.begin(), img.end());
    reversed_seed.insert(reversed_seed.end(), sd.begin(), sd.end());
  }
  const Run reversed = gradient(*u.resident, reversed_images, n, reversed_seed);
  for (int i = 0; i < n; ++i) {
    CHECK(test::first_bitwise_difference(part(reversed.outputs, n - 1 - i, out_size),
                                         part(batch.outputs, i, out_size)) == -1);
    CHECK(test::first_bitwise_difference(part(reversed.d_images, n - 1 - i, in_size),
                                         part(batch.d_images, i, in_size)) == -1);
  }
}

TEST_CASE("CPU backend splits large batches into chunks transparently", "[backend]") {
  // A chain whose activations are large per image (seven 160x160x8 tensors plus two gradient
  // buffers, 1.8 M floats, 7.2 MB), so the workspace budget holds only a few images and a batch
  // of 41 runs as many chunks (an odd count: on two threads the last image is left to a chunk of
  // its own): a 3x3 depthwise with ReLU, five linear 1x1 depthwise layers (cheap, but each keeps a
  // full activation), a pointwise ReLU layer and a Dense readout. Single-image calls around the
  // chunk boundaries and at the end are compared with the batch.
  test::RandomNetworkBuilder builder(160, 160, 8, 400);
  builder.depthwise(3, 1, true, true);
  for (int i = 0; i < 5; ++i) builder.depthwise(1, 1, true, false);
  builder.pointwise(8, true).dense(2);
  Network net = builder.network();
  // Per-channel gains near 1, so the signal neither dies nor explodes through the linear layers.
  std::mt19937 rng(401);
  for (auto& layer : net.layers) {
    if (layer.params.kind == LayerKind::kDepthwise && layer.params.k_h == 1) {
      layer.weights = random_floats(layer.weights.size(), 0.8, 1.25, rng);
    }
  }
  const int n = 41;
  const int chunk = net.images_per_chunk(cpu_workspace_budget_bytes(), kMaxBatch);
  INFO("images per chunk under the workspace budget: " << chunk);
  REQUIRE(chunk < n);
  CHECK(n % chunk != 0);  // a short last chunk

  Uploaded u = upload(std::move(net));
  const std::int64_t in_size = u.net->input_size(), out_size = u.net->num_outputs();
  const auto images = random_floats(n * in_size, -1, 1, rng);
  const auto seed = random_floats(n * out_size, -1, 1, rng);
  const Run batch_fwd = forward(*u.resident, images, n);
  const Run batch = gradient(*u.resident, images, n, seed);
  CHECK(test::first_bitwise_difference(batch.outputs, batch_fwd.outputs) == -1);

  // Single-image calls at both ends of each chunk, bit for bit.
  for (int i : {0, 1, chunk - 1, chunk, chunk + 1, n - 1}) {
    CAPTURE(i);
    const Run alone = gradient(*u.resident, part(images, i, in_size), 1, part(seed, i, out_size));
    CHECK(test::first_bitwise_difference(alone.outputs, part(batch.outputs, i, out_size)) == -1);
    CHECK(test::first_bitwise_difference(alone.d_images, part(batch.d_images, i, in_size)) == -1);
  }

  // One image from each chunk against the double reference. The Dense readout sums 204800
  // float products one after the other, so its rounding error (~sqrt(K) * 6e-8 of the partial
  // sums) reaches 2e-5 of the two outputs; 2e-4 bounds it. The gradient has no such long sums.
  for (int i : {0, n - 1}) {
    CAPTURE(i);
    const auto s = to_double(part(seed, i, out_size));
    const auto ref = test::ref_network(*u.net, to_double(part(images, i, in_size)), 1, &s);
    CHECK(test::relative_l2_error(part(batch.outputs, i, out_size), ref.outputs) < 2e-4);
    CHECK(test::relative_l2_error(part(batch.d_images, i, in_size), ref.d_input) < 1e-5);
  }
}

TEST_CASE("CPU backend rejects bad arguments with INVALID_ARGUMENT", "[backend]") {
  Uploaded u = upload(random_network(0));
  ResidentNetwork& rn = *u.resident;
  const std::int64_t in_size = u.net->input_size(), out_size = u.net->num_outputs();
  const int n = 2;
  std::vector<float> images(n * in_size, 0.5f), outputs(n * out_size), seed(n * out_size, 1.0f),
      d_images(n * in_size);
  auto is_invalid = [](const Status& s) {
    INFO(s.to_string());
    return !s.ok() && s.code() == StatusCode::kInvalidArgument && !s.message().empty();
  };

  SECTION("batch size outside 1..kMaxBatch") {
    CHECK(is_invalid(rn.forward({}, 0, {})));
    CHECK(is_invalid(rn.forward(images, 0, outputs)));
    CHECK(is_invalid(rn.forward(images, -1, outputs)));
    CHECK(is_invalid(rn.forward(images, kMaxBatch + 1, outputs)));
    CHECK(is_invalid(rn.input_gradient({}, 0, {}, {}, {})));
    CHECK(is_invalid(rn.input_gradient(images, kMaxBatch + 1, seed, outputs, d_images)));
  }
  SECTION("buffers of the wrong size") {
    std::span<const float> all_images(images);
    std::span<float> all_outputs(outputs), all_d(d_images);
    CHECK(is_invalid(rn.forward(all_images.first(in_size * n - 1), n, outputs)));
    CHECK(is_invalid(rn.forward(all_images.first(in_size), n, outputs)));  // one image for two
    CHECK(is_invalid(rn.forward(images, n, all_outputs.first(out_size))));
    CHECK(is_invalid(rn.input_gradient(all_images.first(in_size), n, seed, outputs, d_images)));
    CHECK(is_invalid(rn.input_gradient(images, n, seed, all_outputs.first(1), d_images)));
    CHECK(is_invalid(
        rn.input_gradient(images, n, std::span<const float>(seed).first(1), outputs, d_images)));
    CHECK(is_invalid(rn.input_gradient(images, n, seed, outputs, all_d.first(in_size))));
  }
  SECTION("nothing is written on error, and the network still works afterwards") {
    std::fill(outputs.begin(), outputs.end(), -7.0f);
    CHECK(is_invalid(rn.forward(std::span<const float>(images).first(1), n, outputs)));
    CHECK(std::all_of(outputs.begin(), outputs.end(), [](float v) { return v == -7.0f; }));
    CHECK(rn.forward(images, n, outputs).ok());
  }
  SECTION("uploading nothing") {
    auto backend = make_cpu_backend();
    CHECK(backend->name() == "cpu");
    auto null_upload = backend->upload(nullptr);
    CHECK(is_invalid(null_upload.status()));
    auto empty_upload = backend->upload(std::make_shared<const Network>());
    CHECK(is_invalid(empty_upload.status()));
  }
}

TEST_CASE("CPU backend is deterministic", "[backend]") {
  Uploaded u = upload(random_network(0));
  const std::int64_t in_size = u.net->input_size(), out_size = u.net->num_outputs();
  std::mt19937 rng(500);
  const auto images = random_floats(5 * in_size, -1, 1, rng);
  const auto seed = random_floats(5 * out_size, -1, 1, rng);
  const Run first = gradient(*u.resident, images, 5, seed);
  const Run first_fwd = forward(*u.resident, images, 5);
  // Other batch sizes in between resize the reused workspace.
  (void)gradient(*u.resident, part(images, 0, 2 * in_size), 2, part(seed, 0, 2 * out_size));
  (void)forward(*u.resident, part(images, 0, in_size), 1);
  const Run second = gradient(*u.resident, images, 5, seed);
  CHECK(test::first_bitwise_difference(second.outputs, first.outputs) == -1);
  CHECK(test::first_bitwise_difference(second.d_images, first.d_images) == -1);
  CHECK(test::first_bitwise_difference(forward(*u.resident, images, 5).outputs,
                                       first_fwd.outputs) == -1);
}

TEST_CASE("CPU backend results do not depend on the thread count", "[backend]") {
  const int which = GENERATE(0, 1, 2);
  // 3 images: fewer than two a thread, so each layer is split into row bands; 7 and 13: whole
  // images to each thread (uneven tails left to row bands), 13 in several rounds of chunks.
  const int n = GENERATE(3, 7, 13);
  CAPTURE(which, n);
  Uploaded u = upload(random_network(which));
  std::mt19937 rng(600 + which);
  const auto images = random_floats(n * u.net->input_size(), -1, 1, rng);
  const auto seed = random_floats(n * u.net->num_outputs(), -1, 1, rng);
  ThreadCountGuard guard;
  omp_set_num_threads(1);
  const Run one = gradient(*u.resident, images, n, seed);
  const Run one_fwd = forward(*u.resident, images, n);
  for (int threads : {2, 3}) {  // 3 > cores on a 2-core machine: uneven row splits
    CAPTURE(threads);
    omp_set_num_threads(threads);
    const Run many = gradient(*u.resident, images, n, seed);
    CHECK(test::first_bitwise_difference(many.outputs, one.outputs) == -1);
    CHECK(test::first_bitwise_difference(many.d_images, one.d_images) == -1);
    CHECK(test::first_bitwise_difference(forward(*u.resident, images, n).outputs,
                                         one_fwd.outputs) == -1);
  }
}

TEST_CASE("CPU backend calls the seed function once per group, in order, on the caller's thread",
          "[backend]") {
  Uploaded u = upload(random_network(0));
  const std::int64_t in_size = u.net->input_size(), out_size = u.net->num_outputs();
  ThreadCountGuard guard;
  const int threads = GENERATE(1, 2, 3);
  const int n = GENERATE(1, 5, 11);
  CAPTURE(threads, n);
  omp_set_num_threads(threads);
  std::mt19937 rng(650 + n);
  const auto images = random_floats(n * in_size, -1, 1, rng);
  std::vector<float> outputs(n * out_size), d_images(n * in_size);
  const auto caller = std::this_thread::get_id();
  int next = 0, calls = 0, off_thread = 0, wrong_outputs = 0;
  const Status s = u.resident->vector_jacobian(
      images, n,
      [&](int first, int count, std::span<const float> out, std::span<float> seed_out) {
        ++calls;
        if (std::this_thread::get_id() != caller) ++off_thread;
        CHECK(first == next);  // contiguous groups, in order, none skipped or repeated
        CHECK(count >= 1);
        CHECK(out.size() == std::size_t(count * out_size));
        CHECK(seed_out.size() == out.size());
        // The outputs handed over are the group's finished forward pass.
        if (!std::equal(out.begin(), out.end(), outputs.begin() + first * out_size)) {
          ++wrong_outputs;
        }
        for (std::size_t k = 0; k < seed_out.size(); ++k) seed_out[k] = out[k];  // d(sum y^2/2)
        next = first + count;
      },
      outputs, d_images);
  REQUIRE(s.ok());
  CHECK(next == n);
  CHECK(calls >= 1);
  CHECK(off_thread == 0);
  CHECK(wrong_outputs == 0);
  // The same gradient as with the seed given up front.
  const Run want = gradient(*u.resident, images, n, outputs);
  CHECK(test::first_bitwise_difference(d_images, want.d_images) == -1);
}

TEST_CASE("CPU backend serves concurrent callers of one resident network", "[backend]") {
  Uploaded u = upload(random_network(0));
  const std::int64_t in_size = u.net->input_size(), out_size = u.net->num_outputs();
  std::mt19937 rng(700);
  const auto images_a = random_floats(3 * in_size, -1, 1, rng);
  const auto images_b = random_floats(2 * in_size, -1, 1, rng);
  const auto seed_b = random_floats(2 * out_size, -1, 1, rng);
  const Run want_a = forward(*u.resident, images_a, 3);
  const Run want_b = gradient(*u.resident, images_b, 2, seed_b);

  // Catch assertions are not thread-safe: the threads only count mismatches.
  int bad_a = 0, bad_b = 0;
  std::thread ta([&] {
    for (int i = 0; i < 20; ++i) {
      std::vector<float> out(3 * out_size);
      if (!u.resident->forward(images_a, 3, out).ok() || out != want_a.outputs) ++bad_a;
    }
  });
  std::thread tb([&] {
    for (int i = 0; i < 20; ++i) {
      std::vector<float> out(2 * out_size), d(2 * in_size);
      if (!u.resident->input_gradient(images_b, 2, seed_b, out, d).ok() || out != want_b.outputs ||
          d != want_b.d_images) {
        ++bad_b;
      }
    }
  });
  ta.join();
  tb.join();
  CHECK(bad_a == 0);
  CHECK(bad_b == 0);
}

}  // namespace stimloop
