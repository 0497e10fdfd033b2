// The backend interface: where networks live and run. A backend is chosen once at start-up and
// passed explicitly (no global mode); a network uploaded to it stays resident for the life of the
// handle. The CPU backend is always there; the CUDA backend plugs in behind the same interface.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/device_synthesis.h"
#include "kernels/network.h"

namespace stimloop {

class ResidentNetwork {
 public:
  virtual ~ResidentNetwork() = default;
  virtual const Network& network() const = 0;

  // images: n x in_h x in_w x in_c, re-centered float32, channels-last.
  // outputs: n x num_outputs.
  virtual Status forward(std::span<const float> images, int n, std::span<float> outputs) = 0;

  // One forward pass plus the vector-Jacobian product to the input:
  //   d_images[i] = d( sum_k output_seed[i,k] * outputs[i,k] ) / d images[i].
  // A one-hot seed gives d(output k)/d(image); other seeds serve population objectives.
  Status input_gradient(std::span<const float> images, int n, std::span<const float> output_seed,
                        std::span<float> outputs, std::span<float> d_images);

  // The same with a seed computed from the outputs, for objectives whose derivative depends on
  // the response (softmax shares, squared errors): after the forward pass of each group of
  // images [first, first + count) the backend calls seed(first, count, outputs, seed_out) with
  // that group's outputs and fills seed_out, then runs the backward pass. One forward pass per
  // step, whatever the objective.
  using SeedFunction = std::function<void(int first, int count, std::span<const float> outputs,
                                          std::span<float> seed_out)>;
  virtual Status vector_jacobian(std::span<const float> images, int n, const SeedFunction& seed,
                                 std::span<float> outputs, std::span<float> d_images) = 0;

 protected:
  // Shared argument checks, so every backend rejects the same mistakes with the same words.
  Status check_forward_args(std::size_t images, int n, std::size_t outputs) const;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual StatusOr<std::unique_ptr<ResidentNetwork>> upload(
      std::shared_ptr<const Network> network) = 0;
  // Bytes in use on the backend's device (a GPU's memory), or -1 where that is not measured.
  virtual std::int64_t memory_in_use() const { return -1; }
  // Whole cowley2026 runs on the device (device_synthesis.h) for networks uploaded to this
  // backend; UNIMPLEMENTED where the backend has no such path (the host loop runs instead).
  virtual StatusOr<std::unique_ptr<DeviceSynthesis>> start_cowley2026(
      const Cowley2026Settings& settings, const std::vector<SynthesisTarget>& targets) {
    (void)settings, (void)targets;
    return unimplemented("backend '" + name() + "' runs synthesis steps on the host");
  }
};

// The largest batch one call accepts; bigger batches are the caller's to split.
inline constexpr int kMaxBatch = 4096;

std::unique_ptr<Backend> make_cpu_backend();
// The CPU backend keeps a call's activations under this many bytes (all its threads together):
// larger batches run in chunks of images.
std::int64_t cpu_workspace_budget_bytes();
// FAILED_PRECONDITION (with the reason) when this build has no CUDA or no usable GPU is present.
StatusOr<std::unique_ptr<Backend>> make_cuda_backend();
// The CUDA backend with cuDNN's convolutions in place of stimloop's kernels (the library
// baseline); FAILED_PRECONDITION where this build has no cuDNN or it does not initialise.
// float32 with FMA math only, unless `tf32`: then cuDNN may use TF32 tensor cores (inputs
// rounded to a 10-bit mantissa; "cudnn-tf32", an option whose error the GPU tests report).
StatusOr<std::unique_ptr<Backend>> make_cudnn_backend(bool tf32 = false);
// By name, as --backend gives it: cpu, cuda, cudnn, cudnn-tf32, or auto (the GPU when one is
// usable, else the CPU).
StatusOr<std::unique_ptr<Backend>> make_backend(const std::string& name);

}  // namespace stimloop
