#include "server/synthesis/image_ops.h"

#include <algorithm>
#include <cmath>

namespace stimloop::synthesis {
namespace {

// scipy's 'reflect' index: the edge sample is repeated (d c b a | a b c d | d c b a).
int reflect(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// The blur's two row loops, one image row each, compiled three times (AVX-512, AVX2 and baseline
// x86-64) and picked once at load time for the processor at hand: on the synthesis step's
// 112 x 112 x 3 gradient, 157 us one thread with the baseline's 2-lane doubles, 95 us with
// AVX-512. Elementwise multiplies and adds in the same order at every width, and the file is
// built with -ffp-contract=off, so every width gives the same bits (tested against the
// per-element sum).
// (Not under ThreadSanitizer: the clones' resolver runs while the program is being loaded,
// before the sanitizer's runtime, and its instrumented code crashes there.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define STIMLOOP_BLUR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define STIMLOOP_BLUR_CLONES
#endif

// Along y: out = sum over t of k[t + radius] * (row reflect(y + t)), t in order.
STIMLOOP_BLUR_CLONES
void blur_row_along_y(const double* image, const double* k, int radius, int y, int h,
                      std::int64_t row, double* out) {
  // The first tap assigns (0 + a == a), the others add: no zeroing pass over the image.
  const double* first = image + reflect(y - radius, h) * row;
  for (std::int64_t j = 0; j < row; ++j) out[j] = k[0] * first[j];
  for (int t = -radius + 1; t <= radius; ++t) {
    const double kt = k[t + radius];
    const double* in = image + reflect(y + t, h) * row;
    for (std::int64_t j = 0; j < row; ++j) out[j] += kt * in[j];
  }
}

// Along x, one row: interior columns read x + t directly, the `radius` columns at each border
// through the reflection table `source`.
STIMLOOP_BLUR_CLONES
void blur_row_along_x(const double* in, const double* k, int radius, const int* source, int w,
                      int c, int interior_begin, int interior_end, double* out) {
  const int taps = 2 * radius + 1;
  std::fill(out, out + std::int64_t{w} * c, 0.0);
  for (int t = -radius; t <= radius; ++t) {
    const double kt = k[t + radius];
    for (int x = 0; x < interior_begin; ++x) {
      const double* src = in + std::int64_t{source[x * taps + (t + radius)]} * c;
      for (int ch = 0; ch < c; ++ch) out[x * c + ch] += kt * src[ch];
    }
    const std::int64_t shift = std::int64_t{t} * c;  // column x + t
    for (std::int64_t j = std::int64_t{interior_begin} * c; j < std::int64_t{interior_end} * c;
         ++j) {
      out[j] += kt * in[j + shift];
    }
    for (int x = interior_end; x < w; ++x) {
      const double* src = in + std::int64_t{source[x * taps + (t + radius)]} * c;
      for (int ch = 0; ch < c; ++ch) out[x * c + ch] += kt * src[ch];
    }
  }
}

}  // namespace

std::vector<double> gaussian_kernel(double sigma) {
  std::vector<double> k;
  gaussian_kernel_into(sigma, k);
  return k;
}

void gaussian_kernel_into(double sigma, std::vector<double>& k) {
  const int radius = static_cast<int>(4.0 * sigma + 0.5);
  k.resize(2 * radius + 1);
  double total = 0.0;
  for (int i = -radius; i <= radius; ++i) {
    k[i + radius] = std::exp(-0.5 * i * i / (sigma * sigma));
    total += k[i + radius];
  }
  for (double& v : k) v /= total;
}

// Each output element is the same sum as the direct form -- acc = 0, then acc += k[t] * v(t) for
// t = -radius..radius in order -- so results are bit-identical to it (no FMA contraction on the
// host build). The loops are interchanged so the innermost runs over contiguous memory (and
// vectorises), and the reflected indices come from tables instead of a modulo per tap: on the
// 112 x 112 x 3 images of a synthesis step this was most of the host loop's image time.
// Below this many elements a blur stays on one thread (a fork and join costs microseconds).
constexpr std::int64_t kParallelBlurElements = 16384;

void gaussian_blur(std::span<double> image, const ImageShape& s, double sigma,
                   std::vector<double>& scratch) {
  if (sigma <= 0.0) return;
  // The kernel and the border table live on as long as the thread, so that a synthesis step
  // does not allocate (this thread's previous blur had the same sizes).
  // (References: inside the parallel loops below a thread_local name would be each thread's own.)
  thread_local std::vector<double> kernel_storage;
  thread_local std::vector<int> source_storage;
  std::vector<double>& k = kernel_storage;
  std::vector<int>& source = source_storage;
  gaussian_kernel_into(sigma, k);
  const int radius = static_cast<int>(k.size() / 2);
  const std::int64_t row = std::int64_t{s.w} * s.c;
  scratch.resize(image.size());  // every element is written by the first tap below
  // Rows are independent in both passes: a single image (a rig's stimulus) spreads over the
  // cores, each element's sum unchanged. Inside a parallel loop over a batch's images this is a
  // nested region, which OpenMP runs on the calling thread.
  const bool parallel = std::int64_t{s.h} * row >= kParallelBlurElements;
  // Along rows (y), into scratch: row y accumulates rows reflect(y + t), t in order.
#pragma omp parallel for schedule(static) if (parallel)
  for (int y = 0; y < s.h; ++y) {
    blur_row_along_y(image.data(), k.data(), radius, y, s.h, row, scratch.data() + y * row);
  }
  // Along columns (x), back into the image: interior columns read x + t directly, the `radius`
  // columns at each border through the reflection table.
  source.resize(static_cast<std::size_t>(s.w) * k.size());
  for (int x = 0; x < s.w; ++x) {
    for (int t = -radius; t <= radius; ++t)
      source[x * k.size() + (t + radius)] = reflect(x + t, s.w);
  }
  const int interior_begin = std::min(radius, s.w),
            interior_end = std::max(s.w - radius, interior_begin);
#pragma omp parallel for schedule(static) if (parallel)
  for (int y = 0; y < s.h; ++y) {
    blur_row_along_x(scratch.data() + y * row, k.data(), radius, source.data(), s.w, s.c,
                     interior_begin, interior_end, image.data() + y * row);
  }
}

void clip_to_valid(std::span<double> image, const std::array<float, 3>& means) {
  // Per pixel, not per element with i % 3: the division was most of this loop's time.
  const double lo[3] = {-double(means[0]), -double(means[1]), -double(means[2])};
  const double hi[3] = {255.0 - means[0], 255.0 - means[1], 255.0 - means[2]};
  std::size_t i = 0;
  for (; i + 2 < image.size(); i += 3) {
    for (int c = 0; c < 3; ++c) image[i + c] = std::clamp(image[i + c], lo[c], hi[c]);
  }
  for (int c = 0; i < image.size(); ++i, ++c) image[i] = std::clamp(image[i], lo[c], hi[c]);
}

void to_grayscale(std::span<double> image, const std::array<float, 3>& means) {
  for (std::size_t p = 0; p + 2 < image.size(); p += 3) {
    const double gray =
        (image[p] + means[0] + image[p + 1] + means[1] + image[p + 2] + means[2]) / 3.0;
    for (int c = 0; c < 3; ++c) image[p + c] = gray - means[c];
  }
}

std::vector<std::uint8_t> quantize(std::span<const double> image,
                                   const std::array<float, 3>& means) {
  std::vector<std::uint8_t> raw(image.size());
  for (std::size_t i = 0; i < image.size(); ++i) {
    const double v = std::nearbyint(image[i] + means[i % 3]);
    raw[i] = static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
  }
  return raw;
}

void dequantize(std::span<const std::uint8_t> raw, const std::array<float, 3>& means,
                std::span<double> image) {
  for (std::size_t i = 0; i < raw.size(); ++i) image[i] = double(raw[i]) - means[i % 3];
}

}  // namespace stimloop::synthesis
