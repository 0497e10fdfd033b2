// The cowley2026 step's image operations on the device. One block per image for everything that
// spans an image (the RMS reduction, the separable blur), so a step over 219 images is one launch
// of 219 blocks. Arithmetic mirrors server/synthesis/image_ops.cpp and method_cowley2026.cpp
// operation for operation (float64, same summation order along each blur), so the device loop
// tracks the host loop to rounding.
#include <cmath>
#include <string>

#include "kernels/cuda/launch.h"
#include "kernels/cuda/synthesis_kernels.h"

namespace stimloop::cuda {
namespace {

constexpr int kImageThreads = 512;
constexpr int kWarp = 32;

// scipy's 'reflect' index (d c b a | a b c d | d c b a), as image_ops.cpp.
__device__ inline int reflect(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// Deterministic block sum (fixed tree): every thread gets the total.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kImageThreads / kWarp];
  __shared__ double total;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int i = 0; i < kImageThreads / kWarp; ++i) t += warp_sums[i];
    total = t;
  }
  __syncthreads();
  return total;
}

// Where the last evaluation of image i improved on its best, copy x into best (before x moves).
__device__ void copy_if_improved(const ImageState& s, int i, std::int64_t size) {
  const bool improved = s.improved[i] != 0;
  if (improved) {
    const double* x = s.x + i * size;
    double* best = s.best + i * size;
    for (std::int64_t j = threadIdx.x; j < size; j += blockDim.x) best[j] = x[j];
  }
  __syncthreads();  // everyone has read the flag
  if (improved && threadIdx.x == 0) s.improved[i] = 0;
}

// Blur along y of (value(j) for the image), into out.
template <typename Value>
__device__ void blur_rows(const ImageState& s, const BlurTaps& k, Value value, double* out) {
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  for (std::int64_t j = threadIdx.x; j < size; j += blockDim.x) {
    const int c = static_cast<int>(j % 3);
    const int x = static_cast<int>((j / 3) % s.w);
    const int y = static_cast<int>(j / (3 * std::int64_t{s.w}));
    double acc = 0.0;
    for (int t = -k.radius; t <= k.radius; ++t) {
      acc += k.w[t + k.radius] * value((std::int64_t{reflect(y + t, s.h)} * s.w + x) * 3 + c);
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
      acc += k.w[t + k.radius] * in[(std::int64_t{y} * s.w + reflect(x + t, s.w)) * 3 + c];
    }
    out[c] = acc;
  }
}

__global__ void __launch_bounds__(kImageThreads) update_kernel(ImageState s, StepSettings st) {
  const int i = blockIdx.x;
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  copy_if_improved(s, i, size);
  const ImageSlot slot = s.slots[i];
  double local = 0.0;
  for (std::int64_t j = threadIdx.x; j < size; j += blockDim.x) {
    const double g = slot.gradient[j];
    local += g * g;
  }
  const double sum_sq = block_sum(local);
  const double scale = 1.0 / (sqrt(sum_sq / double(size)) + 1e-5);
  double* tmp = s.scratch + i * size;
  blur_rows(s, st.gradient_blur,
            [&](std::int64_t j) { return double(slot.gradient[j]) * scale; }, tmp);
  __syncthreads();
  double* x = s.x + i * size;
  for (int p = threadIdx.x; p < s.h * s.w; p += blockDim.x) {
    double g[3], v[3];
    blur_columns_at(s, st.gradient_blur, tmp, p / s.w, p % s.w, g);
    for (int c = 0; c < 3; ++c) {
      const double mean = st.means[c];
      v[c] = fmin(fmax(x[p * 3 + c] + st.step_size * g[c], -mean), 255.0 - mean);
    }
    if (st.grayscale) {
      const double gray = (v[0] + double(st.means[0]) + v[1] + double(st.means[1]) + v[2] +
                           double(st.means[2])) /
                          3.0;
      for (int c = 0; c < 3; ++c) v[c] = gray - double(st.means[c]);
    }
    for (int c = 0; c < 3; ++c) {
      x[p * 3 + c] = v[c];
      slot.input[p * 3 + c] = static_cast<float>(v[c]);
    }
  }
}

__global__ void record_kernel(ImageState s) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= s.n) return;
  const ImageSlot slot = s.slots[i];
  const double response = slot.outputs[slot.output];
  const double value = slot.sign * response;
  if (value > s.best_value[i]) {
    s.best_value[i] = value;
    s.best_response[i] = response;
    s.improved[i] = 1;
    s.has_best[i] = 1;
  }
}

__global__ void __launch_bounds__(kImageThreads) blur_images_kernel(ImageState s, BlurTaps taps) {
  const int i = blockIdx.x;
  const std::int64_t size = std::int64_t{s.h} * s.w * 3;
  copy_if_improved(s, i, size);
  double* x = s.x + i * size;
  double* tmp = s.scratch + i * size;
  blur_rows(s, taps, [&](std::int64_t j) { return x[j]; }, tmp);
  __syncthreads();
  float* input = s.slots[i].input;
  for (int p = threadIdx.x; p < s.h * s.w; p += blockDim.x) {
    double v[3];
    blur_columns_at(s, taps, tmp, p / s.w, p % s.w, v);
    for (int c = 0; c < 3; ++c) {
      x[p * 3 + c] = v[c];
      input[p * 3 + c] = static_cast<float>(v[c]);
    }
  }
}

__global__ void __launch_bounds__(kImageThreads) flush_best_kernel(ImageState s) {
  copy_if_improved(s, blockIdx.x, std::int64_t{s.h} * s.w * 3);
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

constexpr int kElementThreads = 256;

}  // namespace

StatusOr<BlurTaps> make_blur_taps(double sigma) {
  BlurTaps taps;
  if (sigma <= 0.0) {
    taps.w[0] = 1.0;
    return taps;
  }
  const int radius = static_cast<int>(4.0 * sigma + 0.5);
  if (radius > kMaxBlurRadius) {
    return invalid_argument("blur sigma " + std::to_string(sigma) +
                            " is too wide for the device step (at most " +
                            std::to_string(kMaxBlurRadius) + " pixels of radius)");
  }
  taps.radius = radius;
  double total = 0.0;
  for (int i = -radius; i <= radius; ++i) {
    taps.w[i + radius] = std::exp(-0.5 * i * i / (sigma * sigma));
    total += taps.w[i + radius];
  }
  for (int i = 0; i <= 2 * radius; ++i) taps.w[i] /= total;
  return taps;
}

Status launch_update(const ImageState& s, const StepSettings& settings, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  update_kernel<<<s.n, kImageThreads, 0, stream>>>(s, settings);
  return check_launch("update_kernel");
}

Status launch_record(const ImageState& s, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  record_kernel<<<blocks_for(s.n, kElementThreads), kElementThreads, 0, stream>>>(s);
  return check_launch("record_kernel");
}

Status launch_blur_images(const ImageState& s, const BlurTaps& taps, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  blur_images_kernel<<<s.n, kImageThreads, 0, stream>>>(s, taps);
  return check_launch("blur_images_kernel");
}

Status launch_flush_best(const ImageState& s, cudaStream_t stream) {
  if (s.n == 0) return Status::Ok();
  flush_best_kernel<<<s.n, kImageThreads, 0, stream>>>(s);
  return check_launch("flush_best_kernel");
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
