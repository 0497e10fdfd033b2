// "No allocation inside a synthesis step" (issue 5), checked rather than promised: this binary's
// global operator new counts the calls made while a flag is up, from any thread, and a synthesis
// run on the CPU backend takes a few steps to size its buffers before the counted ones.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>

#include "kernels/backend.h"
#include "models/demo_model.h"
#include "server/synthesis/synthesis_run.h"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

}  // namespace

// Every form that pairs with these, so that nothing allocated here is released by another
// library's operator delete (AddressSanitizer brings its own, and checks that they match). The
// over-aligned forms stay the library's: they pair among themselves.
namespace {
void* counted_malloc(std::size_t size) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  return std::malloc(size == 0 ? 1 : size);
}
void* counted_new(std::size_t size) {
  if (void* p = counted_malloc(size)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) { return counted_new(size); }
void* operator new[](std::size_t size) { return counted_new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return counted_malloc(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return counted_malloc(size);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace stimloop::synthesis {
namespace {

// Allocations made by `steps` calls of run.step(), after `warm_up` uncounted ones.
long allocations_in_steps(SynthesisRun& run, int warm_up, int steps) {
  for (int i = 0; i < warm_up; ++i) REQUIRE(run.step().ok());
  g_allocations = 0;
  g_counting = true;
  bool ok = true;
  for (int i = 0; i < steps; ++i) ok = ok && run.step().ok();
  g_counting = false;
  REQUIRE(ok);
  return g_allocations.load();
}

}  // namespace

TEST_CASE("a cowley2026 step on the CPU backend allocates nothing once warmed up",
          "[synthesis][allocation]") {
  // 1 stimulus: each layer split into row bands; 4: whole images to each thread, and the
  // update's loop over the images in parallel.
  const int count = GENERATE(1, 4);
  CAPTURE(count);
  const auto model = demo_model(DemoKind::kSingle);
  auto backend = make_cpu_backend();
  SynthesisRequest r;
  r.objective = ObjectiveKind::kMax;
  r.method = MethodKind::kCowley2026;
  r.count = count;
  r.steps = 20;
  r.trajectory_every = 1;  // a trajectory point every step: its storage must be there already
  auto run = SynthesisRun::create(r, model->channel_means, *backend, model->network);
  INFO(run.status().message());
  REQUIRE(run.ok());
  CHECK(allocations_in_steps(**run, 3, 10) == 0);
}

}  // namespace stimloop::synthesis
