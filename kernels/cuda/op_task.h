// The description of one op's work for the CUDA kernels, as plain data (g++ and nvcc alike):
// which layer, how many images, which device buffers. Grouped launches (grouped.h) take a table
// of these; a single-layer call takes one.
#pragma once

#include <cstdint>

#include "kernels/layer_params.h"

namespace stimloop::cuda {

// One op over `n` images of one model. Forward: in -> out (bias and ReLU fused). Backward to the
// input: in = d_out, aux = the op's own forward output when its ReLU must mask d_out (else
// nullptr), out = d_in.
struct OpTask {
  LayerParams p;
  int n = 0;
  const float* in = nullptr;
  const float* aux = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;
  float* out = nullptr;
  std::int64_t first_block = 0;  // filled by the launcher
};

// The tasks of one launch: `count` tasks in device memory, or (count == 0) the single task held
// in the parameters.
struct TaskList {
  const OpTask* tasks = nullptr;
  int count = 0;
  OpTask single;
};

}  // namespace stimloop::cuda
