// The cowley2026 step's image operations on the device. Image-wide operations run one block per
// band of rows per image (synthesis_kernels.h): the RMS reduction as per-band partial sums added
// in a fixed order (deterministic), the separable blur as a y pass over the band's rows (reading
// the neighbouring bands' rows, which nobody writes in that kernel) then an x pass within them.
// The float64 arithmetic mirrors server/synthesis/image_ops.cpp and method_cowley2026.cpp
// operation for operation (same summation order along each blur; this file is compiled without
// FMA contraction, as the host code is), so the device loop tracks the host loop to rounding:
// only the RMS sum's order differs.
#include <cmath>
#include <string>

#include "kernels/cuda/launch.h"
#include "kernels/cuda/synthesis_kernels.h"

namespace stimloop::cuda {
namespace {

constexpr int kElementThreads = 256;

constexpr int kBandThreads = 256;
constexpr int kWarp = 32;

// Deterministic block sum (fixed tree): every thread gets the total.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kBandThreads / kWarp];
  __shared__ double total;
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int i = 0; i < kBandThreads / kWarp; ++i) t += warp_sums[i];
    total = t;
  }
  __syncthreads();
  return total;
}

// The rows of one image a block owns: grid (bands, images).
struct Band {
  int image;
  std::int64_t begin, end;  // element range [begin, end) of the image (rows y0..y1, all x, c)
  std::int64_t offset;      // of the image in the state arrays
};
__device__ inline Band band_of_block(const ImageState& s) {
  const int y0 = blockIdx.x * kBandRows, y1 = min(y0 + kBandRows, s.h);
  const std::int64_t row = std::int64_t{s.w} * 3;
  return {static_cast<int>(blockIdx.y), y0 * row, y1 * row, blockIdx.y * std::int64_t{s.h} * row};
}

// Where the last evaluation of the image improved on its best, copy the band of x into best
// (before x moves). The flag is cleared by a later kernel, once every band has been copied.
__device__ void copy_band_if_improved(const ImageState& s, const Band& b) {
  if (s.improved[b.image] == 0) return;
  for (std::int64_t j = b.begin + threadIdx.x; j < b.end; j += blockDim.x) {
    s.best[b.offset + j] = s.x[b.offset + j];
  }
}

// Blur along y of value(j) over the band's elements, into out (image-relative indices).
template <typename Value>
__device__ void blur_band_rows(const ImageState& s, const Band& b, const BlurTaps& k, Value value,
                               double* out) {
  for (std::int64_t j = b.begin + threadIdx.x; j < b.end; j += blockDim.x) {
    const int within = static_cast<int>(j);  // image-relative: 32-bit index math
    const int c = within % 3, x = (within / 3) % s.w, y = within / (3 * s.w);
    double acc = 0.0;
    for (int t = -k.radius; t <= k.radius; ++t) {
      acc += k.w[t + k.radius] * value((std::int64_t{reflect_index(y + t, s.h)} * s.w + x) * 3 + c);
    }
    out[j] = acc;
  }
}

// Blur along x of one pixel's three channels of `in`.
__device__ void blur_columns_at(const ImageState& s, const BlurTaps& k, const double* in, int y,
                                int x, double out[3]) {
  for (int c = 0; c < 3; ++c) {
    double acc = 0.0;
    for (int t = -k.radius; t <= k.radius; ++t) {
      acc += k.w[t + k.radius] * in[(std::int64_t{y} * s.w + reflect_index(x + t, s.w)) * 3 + c];
    }
    out[c] = acc;
  }
}

// Step 1 of the update: each band's sum of squares of the gradient (and the pending best copy).
__global__ void __launch_bounds__(kBandThreads) gradient_sumsq_kernel(ImageState s) {
  const Band b = band_of_block(s);
  copy_band_if_improved(s, b);
  const float* g = s.slots[b.image].gradient;
  double local = 0.0;
  for (std::int64_t j = b.begin + threadIdx.x; j < b.end; j += blockDim.x) {
    const double v = g[j];
    local += v * v;
  }
  const double sum = block_sum(local);
  if (threadIdx.x == 0) s.partials[b.image * gridDim.x + blockIdx.x] = sum;
}

// Step 2: x += step * blur(g / (rms + 1e-5)) on the band, clipped, optionally grayed.
__global__ void __launch_bounds__(kBandThreads) update_kernel(ImageState s, StepSettings st) {
  const Band b = band_of_block(s);
  double sum_sq = 0.0;
  for (unsigned int k = 0; k < gridDim.x; ++k) sum_sq += s.partials[b.image * gridDim.x + k];
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  const double scale = 1.0 / (sqrt(sum_sq / double(size)) + 1e-5);
  const ImageSlot slot = s.slots[b.image];
  double* tmp = s.scratch + b.offset;
  blur_band_rows(
      s, b, st.gradient_blur, [&](std::int64_t j) { return double(slot.gradient[j]) * scale; },
      tmp);
  __syncthreads();
  double* x = s.x + b.offset;
  for (std::int64_t p = b.begin / 3 + threadIdx.x; p < b.end / 3; p += blockDim.x) {
    double g[3], v[3];
    const int pixel = static_cast<int>(p);
    blur_columns_at(s, st.gradient_blur, tmp, pixel / s.w, pixel % s.w, g);
    for (int c = 0; c < 3; ++c) {
      const double mean = st.means[c];
      v[c] = fmin(fmax(x[p * 3 + c] + st.step_size * g[c], -mean), 255.0 - mean);
    }
    if (st.grayscale) {
      const double gray =
          (v[0] + double(st.means[0]) + v[1] + double(st.means[1]) + v[2] + double(st.means[2])) /
          3.0;
      for (int c = 0; c < 3; ++c) v[c] = gray - double(st.means[c]);
    }
    for (int c = 0; c < 3; ++c) {
      x[p * 3 + c] = v[c];
      slot.input[p * 3 + c] = static_cast<float>(v[c]);
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) s.improved[b.image] = 0;  // step 1 copied every band
}

__global__ void record_kernel(ImageState s) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= s.n) return;
  const ImageSlot& slot = s.slots[i];
  record_response(s, i, slot.outputs[slot.output]);
}

// The periodic image blur, pass 1: pending best copy, blur along y into scratch.
__global__ void __launch_bounds__(kBandThreads)
    blur_images_rows_kernel(ImageState s, BlurTaps taps) {
  const Band b = band_of_block(s);
  copy_band_if_improved(s, b);
  const double* x = s.x + b.offset;
  blur_band_rows(
      s, b, taps, [&](std::int64_t j) { return x[j]; }, s.scratch + b.offset);
}

// Pass 2: blur along x back into the image and the network input.
__global__ void __launch_bounds__(kBandThreads)
    blur_images_columns_kernel(ImageState s, BlurTaps taps) {
  const Band b = band_of_block(s);
  double* x = s.x + b.offset;
  float* input = s.slots[b.image].input;
  for (std::int64_t p = b.begin / 3 + threadIdx.x; p < b.end / 3; p += blockDim.x) {
    double v[3];
    const int pixel = static_cast<int>(p);
    blur_columns_at(s, taps, s.scratch + b.offset, pixel / s.w, pixel % s.w, v);
    for (int c = 0; c < 3; ++c) {
      x[p * 3 + c] = v[c];
      input[p * 3 + c] = static_cast<float>(v[c]);
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) s.improved[b.image] = 0;
}

__global__ void __launch_bounds__(kBandThreads) copy_best_kernel(ImageState s) {
  copy_band_if_improved(s, band_of_block(s));
}

__global__ void clear_improved_kernel(ImageState s) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < s.n) s.improved[i] = 0;
}

__global__ void write_input_kernel(ImageState s) {
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  const std::int64_t j = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (j >= s.n * size) return;
  s.slots[j / size].input[j % size] = static_cast<float>(s.x[j]);
}

__global__ void quantize_kernel(ImageState s, float m0, float m1, float m2, std::uint8_t* out) {
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  const std::int64_t j = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (j >= s.n * size) return;
  const double* source = s.has_best[j / size] != 0 ? s.best : s.x;
  const int c = static_cast<int>(j % 3);
  const double mean = c == 0 ? m0 : (c == 1 ? m1 : m2);
  const double v = rint(source[j] + mean);  // round half to even, as std::nearbyint
  out[j] = static_cast<std::uint8_t>(fmin(fmax(v, 0.0), 255.0));
}

}  // namespace

static dim3 band_grid(const ImageState& s) {
  return dim3(static_cast<unsigned int>(bands(s.h)), static_cast<unsigned int>(s.n));
}

Status launch_update(const ImageState& s, const StepSettings& settings, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  gradient_sumsq_kernel<<<band_grid(s), kBandThreads, 0, stream>>>(s);
  RETURN_IF_ERROR(check_launch("gradient_sumsq_kernel"));
  update_kernel<<<band_grid(s), kBandThreads, 0, stream>>>(s, settings);
  return check_launch("update_kernel");
}

Status launch_record(const ImageState& s, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  record_kernel<<<blocks_for(s.n, kElementThreads), kElementThreads, 0, stream>>>(s);
  return check_launch("record_kernel");
}

Status launch_blur_images(const ImageState& s, const BlurTaps& taps, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  blur_images_rows_kernel<<<band_grid(s), kBandThreads, 0, stream>>>(s, taps);
  RETURN_IF_ERROR(check_launch("blur_images_rows_kernel"));
  blur_images_columns_kernel<<<band_grid(s), kBandThreads, 0, stream>>>(s, taps);
  return check_launch("blur_images_columns_kernel");
}

Status launch_flush_best(const ImageState& s, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  copy_best_kernel<<<band_grid(s), kBandThreads, 0, stream>>>(s);
  RETURN_IF_ERROR(check_launch("copy_best_kernel"));
  clear_improved_kernel<<<blocks_for(s.n, kElementThreads), kElementThreads, 0, stream>>>(s);
  return check_launch("clear_improved_kernel");
}

Status launch_write_input(const ImageState& s, cudaStream_t stream) {
  const std::int64_t total = std::int64_t{s.n} * s.h * s.w * 3;
  if (total == 0) return Status::Ok();
  write_input_kernel<<<blocks_for(total, kElementThreads), kElementThreads, 0, stream>>>(s);
  return check_launch("write_input_kernel");
}

Status launch_quantize(const ImageState& s, const float means[3], std::uint8_t* out,
                       cudaStream_t stream) {
  const std::int64_t total = std::int64_t{s.n} * s.h * s.w * 3;
  if (total == 0) return Status::Ok();
  quantize_kernel<<<blocks_for(total, kElementThreads), kElementThreads, 0, stream>>>(
      s, means[0], means[1], means[2], out);
  return check_launch("quantize_kernel");
}

}  // namespace stimloop::cuda
