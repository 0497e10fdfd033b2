// Methods: how a gradient becomes the next image. The driver (synthesis_run.h) owns the loop:
// for each step it asks the method where to take the gradient, gets the objective's gradient
// there from the backend (penalties added), lets the method update the images, evaluates them
// (keeping the best so far) and gives the method a last word (the authors' periodic image blur).
#pragma once

#include <array>
#include <memory>
#include <span>
#include <vector>

#include "server/synthesis/image_ops.h"
#include "server/synthesis/request.h"
#include "server/synthesis/rng.h"

namespace stimloop::synthesis {

// The images of one batch, re-centered, in double (the authors keep float64 image state).
struct BatchState {
  ImageShape shape;
  int n = 0;
  std::array<float, 3> means{};
  std::vector<double> x;   // n x shape.size(): the current images
  std::vector<double> x0;  // the initial images (adversarial methods project around them)
  std::vector<Rng> rngs;   // one stream per image: stimulus k is reproducible alone

  std::span<double> image(int i) {
    return {x.data() + i * shape.size(), std::size_t(shape.size())};
  }
  std::span<const double> image0(int i) const {
    return {x0.data() + i * shape.size(), std::size_t(shape.size())};
  }
};

class Method {
 public:
  virtual ~Method() = default;

  // Spatial shift (dy, dx) of image i for step t's gradient (Adam's jitter); the driver rolls the
  // image, and rolls the gradient back. Default: none.
  virtual std::pair<int, int> jitter(int /*t*/, int /*i*/, BatchState& /*state*/) { return {0, 0}; }

  // The update of step t from the gradient of the objective (to maximise) at state.x, including
  // the method's projections and clipping to the valid pixel range.
  virtual void update(int t, BatchState& state, std::span<const double> gradient) = 0;

  // After step t's images were evaluated and the best so far recorded. Returns true when it
  // changed state.x (so the cached gradient is stale).
  virtual bool after_evaluation(int /*t*/, BatchState& /*state*/) { return false; }

  // How the best image becomes 8-bit (adversarial methods must stay inside the epsilon ball).
  virtual std::vector<std::uint8_t> to_rgb8(const BatchState& state, int i,
                                            std::span<const double> image) const {
    (void)i;
    return quantize(image, state.means);
  }

  // Whether the initial images count as candidates for the best so far. The authors' algorithm
  // only keeps images evaluated after an update.
  virtual bool initial_image_is_candidate() const { return true; }
};

std::unique_ptr<Method> make_cowley2026(const SynthesisRequest& request);
std::unique_ptr<Method> make_adam(const SynthesisRequest& request, const ImageShape& shape, int n);
std::unique_ptr<Method> make_pgd(const SynthesisRequest& request);

inline std::unique_ptr<Method> make_method(const SynthesisRequest& request, const ImageShape& shape,
                                           int n) {
  switch (request.method) {
    case MethodKind::kCowley2026:
      return make_cowley2026(request);
    case MethodKind::kAdam:
      return make_adam(request, shape, n);
    case MethodKind::kPgd:
      return make_pgd(request);
  }
  return nullptr;
}

}  // namespace stimloop::synthesis
