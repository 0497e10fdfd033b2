// Winograd's minimal filtering F(4, 5) in one dimension: four outputs of a 5-tap correlation,
// y[i] = sum_k d[i + k] g[k], from the eight products of transformed inputs and taps,
//   y = A^T [(G g) .* (B^T d)],
// with the interpolation points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity (the Toom-Cook
// construction; the same point set as the common F(6, 3)). Eight multiplications instead of
// twenty. The tables below are the exact rationals; the layer-0 kernel (winograd_forward.h)
// evaluates B^T and A^T in a factored form of its own. test_winograd_tables.cpp holds the tables
// to the correlation they stand for, and the factored forms to the tables.
#pragma once

#include "kernels/layer_params.h"

namespace stimloop::cpu::winograd {

inline constexpr int kOutputs = 4;  // outputs per tile
inline constexpr int kTaps = 5;     // kernel width
inline constexpr int kPoints = 8;   // products per tile: kOutputs + kTaps - 1

// B^T: the transformed inputs from the tile's 8 input values.
inline constexpr double kInputTransform[kPoints][kPoints] = {
    {1, 0, -21.0 / 4, 0, 21.0 / 4, 0, -1, 0},
    {0, 1, 1, -17.0 / 4, -17.0 / 4, 1, 1, 0},
    {0, -1, 1, 17.0 / 4, -17.0 / 4, -1, 1, 0},
    {0, 1.0 / 2, 1.0 / 4, -5.0 / 2, -5.0 / 4, 2, 1, 0},
    {0, -1.0 / 2, 1.0 / 4, 5.0 / 2, -5.0 / 4, -2, 1, 0},
    {0, 2, 4, -5.0 / 2, -5, 1.0 / 2, 1, 0},
    {0, -2, 4, 5.0 / 2, -5, -1.0 / 2, 1, 0},
    {0, -1, 0, 21.0 / 4, 0, -21.0 / 4, 0, 1},
};

// G: the transformed taps from the kernel's 5.
inline constexpr double kFilterTransform[kPoints][kTaps] = {
    {1, 0, 0, 0, 0},
    {-2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9},
    {-2.0 / 9, 2.0 / 9, -2.0 / 9, 2.0 / 9, -2.0 / 9},
    {1.0 / 90, 1.0 / 45, 2.0 / 45, 4.0 / 45, 8.0 / 45},
    {1.0 / 90, -1.0 / 45, 2.0 / 45, -4.0 / 45, 8.0 / 45},
    {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45, 2.0 / 45},
    {32.0 / 45, -16.0 / 45, 8.0 / 45, -4.0 / 45, 2.0 / 45},
    {0, 0, 0, 0, 1},
};

// A^T: the tile's 4 outputs from the 8 products.
inline constexpr double kOutputTransform[kOutputs][kPoints] = {
    {1, 1, 1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 1.0 / 2, -1.0 / 2, 0},
    {0, 1, 1, 4, 4, 1.0 / 4, 1.0 / 4, 0},
    {0, 1, -1, 8, -8, 1.0 / 8, -1.0 / 8, 1},
};

inline constexpr int kChannels = 3;  // input channels of the layer-0 kernels (RGB)
// Tiles a row may hold: bounds the per-row deinterleave buffer on the stack (1024 pixels).
inline constexpr int kMaxTiles = 256;

// The shape the layer-0 kernels (winograd_forward.h) take: 3 input channels, a 5x5 kernel at
// stride 1 (any padding), rows of at most 1024 outputs. Defined in conv2d.cpp, compiled without
// any -m flag: an inline function here would be compiled into every ISA file, and the linker
// keeps one of those copies for all callers.
bool forward_applies(const LayerParams& p);

}  // namespace stimloop::cpu::winograd
