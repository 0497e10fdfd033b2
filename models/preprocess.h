// From 8-bit RGB (what rigs show) to the float input the models take, and back.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace stimloop {

// raw: n x h x w x 3 bytes, RGB. Returns raw - mean per channel, as float32.
std::vector<float> recenter_rgb8(std::span<const std::uint8_t> raw,
                                 const std::array<float, 3>& channel_means);

}  // namespace stimloop
