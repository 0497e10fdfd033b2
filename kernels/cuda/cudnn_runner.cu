// cuDNN's convolutions as a LayerRunner: the library baseline the custom kernels are measured
// against (--backend cudnn). Every op is a cuDNN convolution in NHWC float32 with FMA math only
// (no TF32, so both paths compute in float32; --backend cudnn-tf32 lets cuDNN use TF32 tensor
// cores instead, for the error report the issue asks of that option): dense, depthwise (group
// count = channels) and
// pointwise/Dense (1x1). Bias + ReLU and the backward ReLU mask are small kernels of this file.
// TensorFlow's 'same' padding puts the odd pixel after; cuDNN pads symmetrically, so such layers
// run 'valid' on an explicitly padded copy of the input (and crop the gradient back).
#include <cudnn.h>

#include <algorithm>
#include <string>

#include "kernels/cuda/launch.h"
#include "kernels/cuda/layer_runner.h"

namespace stimloop::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::size_t kMaxWorkspaceBytes = std::size_t{256} << 20;

Status cudnn_status(cudnnStatus_t s, const char* expr) {
  if (s == CUDNN_STATUS_SUCCESS) return Status::Ok();
  return internal_error(std::string(expr) + " failed: " + cudnnGetErrorString(s));
}
#define CUDNN_RETURN_IF_ERROR(expr) RETURN_IF_ERROR(cudnn_status((expr), #expr))

__global__ void bias_relu_kernel(std::int64_t total, int channels, const float* bias, bool relu,
                                 float* out) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= total) return;
  float y = out[i] + (bias != nullptr ? bias[i % channels] : 0.0f);
  out[i] = relu ? fmaxf(y, 0.0f) : y;
}

__global__ void relu_mask_kernel(std::int64_t total, const float* d_out, const float* relu_out,
                                 float* masked) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i < total) masked[i] = relu_out[i] > 0.0f ? d_out[i] : 0.0f;
}

// Copies (n, h, w, c) into the interior of (n, ph, pw, c) at (top, left); the rest is zero.
__global__ void pad_kernel(std::int64_t total, int h, int w, int c, int ph, int pw, int top,
                           int left, const float* in, float* padded) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= total) return;
  const int ch = static_cast<int>(i % c);
  std::int64_t rest = i / c;
  const int x = static_cast<int>(rest % pw) - left;
  rest /= pw;
  const int y = static_cast<int>(rest % ph) - top;
  const std::int64_t b = rest / ph;
  padded[i] = y >= 0 && y < h && x >= 0 && x < w ? in[((b * h + y) * w + x) * c + ch] : 0.0f;
}

// The inverse: the interior of a padded gradient.
__global__ void crop_kernel(std::int64_t total, int h, int w, int c, int ph, int pw, int top,
                            int left, const float* padded, float* out) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= total) return;
  const int ch = static_cast<int>(i % c);
  std::int64_t rest = i / c;
  const int x = static_cast<int>(rest % w);
  rest /= w;
  const int y = static_cast<int>(rest % h);
  const std::int64_t b = rest / h;
  out[i] = padded[((b * ph + y + top) * pw + x + left) * c + ch];
}

// cuDNN's filter layout for NHWC: (out, kh, kw, in / groups).
std::vector<float> to_krsc(const NetworkLayer& layer) {
  const LayerParams& p = layer.params;
  std::vector<float> out(layer.weights.size());
  const int taps = p.k_h * p.k_w;
  switch (p.kind) {
    case LayerKind::kConv2D:  // (kh, kw, in, out)
      for (int t = 0; t < taps; ++t) {
        for (int ci = 0; ci < p.in_c; ++ci) {
          for (int co = 0; co < p.out_c; ++co) {
            out[(std::int64_t{co} * taps + t) * p.in_c + ci] =
                layer.weights[(std::int64_t{t} * p.in_c + ci) * p.out_c + co];
          }
        }
      }
      break;
    case LayerKind::kDepthwise:  // (kh, kw, c)
      for (int t = 0; t < taps; ++t) {
        for (int c = 0; c < p.in_c; ++c)
          out[std::int64_t{c} * taps + t] = layer.weights[t * p.in_c + c];
      }
      break;
    case LayerKind::kPointwise:  // (in, out)
      for (int ci = 0; ci < p.in_c; ++ci) {
        for (int co = 0; co < p.out_c; ++co) {
          out[std::int64_t{co} * p.in_c + ci] = layer.weights[std::int64_t{ci} * p.out_c + co];
        }
      }
      break;
  }
  return out;
}

struct CudnnLayer {
  DeviceBuffer<float> weights, bias;
  bool padded = false;  // asymmetric 'same' padding: run 'valid' on a padded copy
  int padded_h = 0, padded_w = 0;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t bwd_algo{};
  int described_n = 0;  // the batch the descriptors and algorithms were chosen for
};

class CudnnLayerRunner final : public LayerRunner {
 public:
  CudnnLayerRunner(const Network& net, bool tf32) : net_(net), tf32_(tf32) {}
  ~CudnnLayerRunner() override {
    for (auto& l : layers_) {
      if (l.x != nullptr) cudnnDestroyTensorDescriptor(l.x);
      if (l.y != nullptr) cudnnDestroyTensorDescriptor(l.y);
      if (l.w != nullptr) cudnnDestroyFilterDescriptor(l.w);
      if (l.conv != nullptr) cudnnDestroyConvolutionDescriptor(l.conv);
    }
    if (handle_ != nullptr) cudnnDestroy(handle_);
  }

  Status init(cudaStream_t stream) {
    CUDNN_RETURN_IF_ERROR(cudnnCreate(&handle_));
    layers_.resize(net_.layers.size());
    std::vector<std::vector<float>> krsc;  // host copies, alive until the uploads finish
    for (std::size_t l = 0; l < net_.layers.size(); ++l) {
      const NetworkLayer& src = net_.layers[l];
      const LayerParams& p = src.params;
      CudnnLayer& dst = layers_[l];
      krsc.push_back(to_krsc(src));
      RETURN_IF_ERROR(dst.weights.allocate(krsc.back().size()));
      RETURN_IF_ERROR(dst.weights.upload(krsc.back().data(), krsc.back().size(), stream));
      if (!src.bias.empty()) {
        RETURN_IF_ERROR(dst.bias.allocate(src.bias.size()));
        RETURN_IF_ERROR(dst.bias.upload(src.bias.data(), src.bias.size(), stream));
      }
      const int pad_bottom = (p.out_h - 1) * p.stride_h + p.k_h - p.in_h - p.pad_top;
      const int pad_right = (p.out_w - 1) * p.stride_w + p.k_w - p.in_w - p.pad_left;
      dst.padded = pad_bottom != p.pad_top || pad_right != p.pad_left;
      dst.padded_h = p.in_h + p.pad_top + std::max(pad_bottom, 0);
      dst.padded_w = p.in_w + p.pad_left + std::max(pad_right, 0);
      CUDNN_RETURN_IF_ERROR(cudnnCreateTensorDescriptor(&dst.x));
      CUDNN_RETURN_IF_ERROR(cudnnCreateTensorDescriptor(&dst.y));
      CUDNN_RETURN_IF_ERROR(cudnnCreateFilterDescriptor(&dst.w));
      CUDNN_RETURN_IF_ERROR(cudnnCreateConvolutionDescriptor(&dst.conv));
      const bool depthwise = p.kind == LayerKind::kDepthwise;
      CUDNN_RETURN_IF_ERROR(cudnnSetFilter4dDescriptor(dst.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC,
                                                       p.out_c, depthwise ? 1 : p.in_c, p.k_h,
                                                       p.k_w));
      CUDNN_RETURN_IF_ERROR(cudnnSetConvolution2dDescriptor(
          dst.conv, dst.padded ? 0 : p.pad_top, dst.padded ? 0 : p.pad_left, p.stride_h, p.stride_w,
          1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      CUDNN_RETURN_IF_ERROR(cudnnSetConvolutionGroupCount(dst.conv, depthwise ? p.in_c : 1));
      // Tensor-op math is what allows TF32 for float32 data (Ampere and later); FMA math
      // restricts cuDNN to kernels that compute in float32.
      CUDNN_RETURN_IF_ERROR(
          cudnnSetConvolutionMathType(dst.conv, tf32_ ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return Status::Ok();
  }

  Status forward(std::size_t l, int n, const float* in, float* out, cudaStream_t stream) override {
    const LayerParams& p = net_.layers[l].params;
    CudnnLayer& L = layers_[l];
    RETURN_IF_ERROR(describe(l, n, stream));
    if (L.padded) {
      const std::int64_t total = std::int64_t{n} * L.padded_h * L.padded_w * p.in_c;
      pad_kernel<<<blocks_for(total, kThreads), kThreads, 0, stream>>>(
          total, p.in_h, p.in_w, p.in_c, L.padded_h, L.padded_w, p.pad_top, p.pad_left, in,
          padded_.data());
      RETURN_IF_ERROR(check_launch("pad_kernel"));
      in = padded_.data();
    }
    const float one = 1.0f, zero = 0.0f;
    CUDNN_RETURN_IF_ERROR(cudnnConvolutionForward(handle_, &one, L.x, in, L.w, L.weights.data(),
                                                  L.conv, L.fwd_algo, workspace_.data(),
                                                  workspace_bytes_, &zero, L.y, out));
    const std::int64_t total = std::int64_t{n} * p.out_size();
    if (p.has_bias || p.relu) {
      bias_relu_kernel<<<blocks_for(total, kThreads), kThreads, 0, stream>>>(
          total, p.out_c, p.has_bias ? L.bias.data() : nullptr, p.relu, out);
      RETURN_IF_ERROR(check_launch("bias_relu_kernel"));
    }
    return Status::Ok();
  }

  Status backward(std::size_t l, int n, const float* d_out, const float* relu_out, float* d_in,
                  cudaStream_t stream) override {
    const LayerParams& p = net_.layers[l].params;
    CudnnLayer& L = layers_[l];
    RETURN_IF_ERROR(describe(l, n, stream));
    if (p.relu) {
      const std::int64_t total = std::int64_t{n} * p.out_size();
      relu_mask_kernel<<<blocks_for(total, kThreads), kThreads, 0, stream>>>(total, d_out, relu_out,
                                                                             masked_.data());
      RETURN_IF_ERROR(check_launch("relu_mask_kernel"));
      d_out = masked_.data();
    }
    const float one = 1.0f, zero = 0.0f;
    float* target = L.padded ? padded_.data() : d_in;
    CUDNN_RETURN_IF_ERROR(cudnnConvolutionBackwardData(handle_, &one, L.w, L.weights.data(), L.y,
                                                       d_out, L.conv, L.bwd_algo, workspace_.data(),
                                                       workspace_bytes_, &zero, L.x, target));
    if (L.padded) {
      const std::int64_t total = std::int64_t{n} * p.in_size();
      crop_kernel<<<blocks_for(total, kThreads), kThreads, 0, stream>>>(
          total, p.in_h, p.in_w, p.in_c, L.padded_h, L.padded_w, p.pad_top, p.pad_left,
          padded_.data(), d_in);
      RETURN_IF_ERROR(check_launch("crop_kernel"));
    }
    return Status::Ok();
  }

 private:
  // Descriptors, algorithms and scratch for batch n (kept until the batch size changes).
  Status describe(std::size_t l, int n, cudaStream_t stream) {
    CUDNN_RETURN_IF_ERROR(cudnnSetStream(handle_, stream));
    CudnnLayer& L = layers_[l];
    if (L.described_n == n) return Status::Ok();
    const LayerParams& p = net_.layers[l].params;
    const int xh = L.padded ? L.padded_h : p.in_h, xw = L.padded ? L.padded_w : p.in_w;
    CUDNN_RETURN_IF_ERROR(
        cudnnSetTensor4dDescriptor(L.x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, n, p.in_c, xh, xw));
    CUDNN_RETURN_IF_ERROR(cudnnSetTensor4dDescriptor(L.y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, n,
                                                     p.out_c, p.out_h, p.out_w));
    int on = 0, oc = 0, oh = 0, ow = 0;
    CUDNN_RETURN_IF_ERROR(
        cudnnGetConvolution2dForwardOutputDim(L.conv, L.x, L.w, &on, &oc, &oh, &ow));
    if (oh != p.out_h || ow != p.out_w || oc != p.out_c) {
      return internal_error("cuDNN output shape differs from the layer's");
    }
    constexpr int kCandidates = 8;
    cudnnConvolutionFwdAlgoPerf_t fwd[kCandidates];
    cudnnConvolutionBwdDataAlgoPerf_t bwd[kCandidates];
    int found = 0;
    CUDNN_RETURN_IF_ERROR(cudnnGetConvolutionForwardAlgorithm_v7(handle_, L.x, L.w, L.conv, L.y,
                                                                 kCandidates, &found, fwd));
    std::size_t need = 0;
    bool chosen = false;
    for (int i = 0; i < found && !chosen; ++i) {
      if (fwd[i].status == CUDNN_STATUS_SUCCESS && fwd[i].memory <= kMaxWorkspaceBytes) {
        L.fwd_algo = fwd[i].algo;
        need = std::max(need, fwd[i].memory);
        chosen = true;
      }
    }
    if (!chosen)
      return internal_error("cuDNN offers no forward algorithm for layer " + std::to_string(l));
    CUDNN_RETURN_IF_ERROR(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        handle_, L.w, L.y, L.conv, L.x, kCandidates, &found, bwd));
    chosen = false;
    for (int i = 0; i < found && !chosen; ++i) {
      if (bwd[i].status == CUDNN_STATUS_SUCCESS && bwd[i].memory <= kMaxWorkspaceBytes) {
        L.bwd_algo = bwd[i].algo;
        need = std::max(need, bwd[i].memory);
        chosen = true;
      }
    }
    if (!chosen)
      return internal_error("cuDNN offers no backward-data algorithm for layer " +
                            std::to_string(l));
    if (need > workspace_bytes_) {
      RETURN_IF_ERROR(workspace_.allocate(need));
      workspace_bytes_ = need;
    }
    const std::size_t padded = L.padded ? std::size_t(n) * L.padded_h * L.padded_w * p.in_c : 0;
    if (padded > padded_.size()) RETURN_IF_ERROR(padded_.allocate(padded));
    const std::size_t masked = p.relu ? std::size_t(n) * p.out_size() : 0;
    if (masked > masked_.size()) RETURN_IF_ERROR(masked_.allocate(masked));
    L.described_n = n;
    return Status::Ok();
  }

  const Network& net_;
  cudnnHandle_t handle_ = nullptr;
  std::vector<CudnnLayer> layers_;
  bool tf32_;
  DeviceBuffer<unsigned char> workspace_;
  std::size_t workspace_bytes_ = 0;
  DeviceBuffer<float> padded_, masked_;
};

}  // namespace

StatusOr<std::unique_ptr<LayerRunner>> make_cudnn_runner(const Network& net, cudaStream_t stream,
                                                         bool tf32) {
  auto runner = std::make_unique<CudnnLayerRunner>(net, tf32);
  const Status s = runner->init(stream);
  if (!s.ok()) return failed_precondition("cuDNN unusable: " + s.message());
  return std::unique_ptr<LayerRunner>(std::move(runner));
}

std::size_t cudnn_version() { return cudnnGetVersion(); }

}  // namespace stimloop::cuda
