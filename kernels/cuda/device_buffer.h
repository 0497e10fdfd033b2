// RAII device memory: the only way stimloop holds device memory. Move-only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace stimloop::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  // Allocates `count` elements, releasing what was held. Contents are uninitialized.
  Status allocate(std::size_t count) {
    reset();
    if (count == 0) return Status::Ok();
    void* p = nullptr;
    CUDA_RETURN_IF_ERROR(cudaMalloc(&p, count * sizeof(T)));
    ptr_ = static_cast<T*>(p);
    size_ = count;
    return Status::Ok();
  }

  Status upload(const T* host, std::size_t count, cudaStream_t stream) {
    if (count > size_) return invalid_argument("upload larger than the device buffer");
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice, stream));
    return Status::Ok();
  }

  Status download(T* host, std::size_t count, cudaStream_t stream) const {
    if (count > size_) return invalid_argument("download larger than the device buffer");
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host, ptr_, count * sizeof(T), cudaMemcpyDeviceToHost, stream));
    return Status::Ok();
  }

  void reset() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = 0;
  }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  std::size_t size() const { return size_; }

 private:
  T* ptr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace stimloop::cuda
