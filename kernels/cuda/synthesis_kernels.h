// Kernels of the cowley2026 step on the device (docs/domain.md). Image state is float64, as in the
// authors' code and the host loop (server/synthesis/); the network sees a float32 copy written by
// the same kernels.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/synthesis_state.h"

namespace stimloop::cuda {

// Image-wide kernels split each image into bands of rows, one block per (band, image), so one
// image still spreads over many SMs (a rig's single stimulus: 56 blocks) and 219 images fill the
// card.
constexpr int kBandRows = 2;
inline int bands(int h) { return (h + kBandRows - 1) / kBandRows; }

// x += step * blur(g / (rms(g) + 1e-5)), clipped to the valid range, optionally grayed; writes
// the network input. Copies x into best first where the last evaluation improved on it.
Status launch_update(const ImageState& s, const StepSettings& settings, cudaStream_t stream);
// Best-so-far: where sign * outputs[output] > best_value, record it and mark the image.
Status launch_record(const ImageState& s, cudaStream_t stream);
// The periodic blur of the image itself (after the evaluation of the step; best copied first).
Status launch_blur_images(const ImageState& s, const BlurTaps& taps, cudaStream_t stream);
// Copies pending improvements into best (before reading best).
Status launch_flush_best(const ImageState& s, cudaStream_t stream);
// Writes the network input from x.
Status launch_write_input(const ImageState& s, cudaStream_t stream);
// 8-bit images: round(best or, where !has_best, x + mean) clamped to 0..255.
Status launch_quantize(const ImageState& s, const float means[3], std::uint8_t* out,
                       cudaStream_t stream);

}  // namespace stimloop::cuda
