#include "tests/golden/golden_compare.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

namespace stimloop::test {

std::string GradientComparison::describe() const {
  std::ostringstream s;
  s << "relative L2 error " << rel_l2;
  if (kink_checked) {
    s << "; " << ambiguous_units << " ReLU unit(s) within float32 rounding of zero";
    if (ambiguous_units > 0) {
      s << " [" << kinks << "], footprint " << 100.0 * footprint_fraction
        << " % of the input, relative L2 error outside it " << rel_l2_outside;
    }
  }
  return s.str();
}

GradientComparison compare_input_gradient(Backend& backend, const Network& net,
                                          std::span<const float> image, std::span<const float> ours,
                                          std::span<const double> ref, double tolerance) {
  GradientComparison result;
  const std::size_t size = ref.size();
  double diff2 = 0.0, ref2 = 0.0;
  for (std::size_t e = 0; e < size; ++e) {
    const double d = static_cast<double>(ours[e]) - ref[e];
    diff2 += d * d;
    ref2 += ref[e] * ref[e];
  }
  result.rel_l2 = ref2 > 0.0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  if (result.rel_l2 <= tolerance) return result;

  result.kink_checked = true;
  std::vector<bool> footprint(size, false);
  std::vector<std::pair<double, std::string>> candidates;  // (|z| / max|z|, description)
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    if (!net.layers[l].params.relu) continue;
    // The network cut after layer l with its ReLU removed: its output is the ReLU input z.
    auto prefix = std::make_shared<Network>();
    prefix->in_h = net.in_h;
    prefix->in_w = net.in_w;
    prefix->in_c = net.in_c;
    prefix->layers.assign(net.layers.begin(),
                          net.layers.begin() + static_cast<std::ptrdiff_t>(l) + 1);
    prefix->layers.back().params.relu = false;
    auto resident = backend.upload(prefix);
    if (!resident.ok()) continue;
    const auto& p = prefix->layers.back().params;
    std::vector<float> z(static_cast<std::size_t>(p.out_size()));
    if (!(*resident)->forward(image, 1, z).ok()) continue;
    double max_z = 0.0;
    for (float v : z) max_z = std::max(max_z, static_cast<double>(std::abs(v)));
    const double threshold = kKinkRelativeThreshold * max_z;
    std::vector<float> seed(z.size(), 0.0f);
    int here = 0;
    for (std::size_t u = 0; u < z.size(); ++u) {
      if (std::abs(z[u]) > threshold) continue;
      ++here;
      if (++result.ambiguous_units > kMaxAmbiguousUnits) break;
      seed[u] = 1.0f;
      const int c = static_cast<int>(u % p.out_c);
      const int x = static_cast<int>((u / p.out_c) % p.out_w);
      const int y = static_cast<int>(u / p.out_c / p.out_w);
      char text[160];
      std::snprintf(text, sizeof text, "%s (%d,%d,%d) z=%.2e of max %.2e",
                    net.layers[l].name.c_str(), y, x, c, static_cast<double>(z[u]), max_z);
      candidates.emplace_back(std::abs(z[u]) / max_z, text);
    }
    if (result.ambiguous_units > kMaxAmbiguousUnits) break;
    if (here == 0) continue;
    // d(sum of those z_u)/d input: its support is the union of the places where flipping any of
    // them can change the gradient (an exact cancellation to 0.0f is not a practical concern).
    std::vector<float> out(z.size()), d(size);
    if (!(*resident)->input_gradient(image, 1, seed, out, d).ok()) continue;
    for (std::size_t e = 0; e < size; ++e) {
      if (d[e] != 0.0f) footprint[e] = true;
    }
  }
  // Name the closest calls (the likely flips) first.
  std::sort(candidates.begin(), candidates.end());
  for (std::size_t i = 0; i < candidates.size() && i < 3; ++i) {
    result.kinks += (i ? "; " : "") + candidates[i].second;
  }
  if (candidates.size() > 3)
    result.kinks += "; ... (" + std::to_string(candidates.size()) + " in all)";
  if (result.ambiguous_units > kMaxAmbiguousUnits) {
    // Too many to be rounding accidents: treat as unexplained.
    result.ambiguous_units = 0;
    result.kinks = "more than " + std::to_string(kMaxAmbiguousUnits) + " near-zero ReLU inputs";
    return result;
  }
  double outside2 = 0.0;
  std::size_t covered = 0;
  for (std::size_t e = 0; e < size; ++e) {
    if (footprint[e]) {
      ++covered;
      continue;
    }
    const double d = static_cast<double>(ours[e]) - ref[e];
    outside2 += d * d;
  }
  result.footprint_fraction = static_cast<double>(covered) / static_cast<double>(size);
  result.rel_l2_outside = ref2 > 0.0 ? std::sqrt(outside2 / ref2) : std::sqrt(outside2);
  return result;
}

}  // namespace stimloop::test
