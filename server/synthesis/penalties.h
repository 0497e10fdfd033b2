// Image penalties of the Adam method, subtracted from the objective (which is maximised):
//   tv_weight * TV(x)                 total variation: sum over pixels and channels of
//                                     |x[y+1,x] - x[y,x]| + |x[y,x+1] - x[y,x]| (anisotropic; the
//                                     derivative of |.| taken as sign(.), 0 at 0), divided by the
//                                     number of values so weights do not depend on image size
//   l2_weight * mean(x^2)             on the re-centered image
//   diversity_weight * mean_{j != i} cos(x_i - mean(x_i), x_j - mean(x_j))   within the batch
// apply_penalties subtracts each image's penalty from values[i] and adds the penalty's gradient
// (negated) to gradient (n x size), so the driver maximises objective - penalties.
#pragma once

#include <span>

#include "server/synthesis/method.h"

namespace stimloop::synthesis {

bool has_penalties(const SynthesisRequest& request);
void apply_penalties(const SynthesisRequest& request, const BatchState& state,
                     std::span<double> values, std::span<double> gradient);

}  // namespace stimloop::synthesis
