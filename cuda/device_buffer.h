// GPU memory owned by a C++ object: DeviceBuffer for weights (cudaMalloc, freed with the object) and StreamBuffer
// for per-forward scratch (stream-ordered cudaMallocAsync from the device's pool, freed in stream order).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "cuda_check.h"

namespace dynamoe::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes, const char* what) : bytes_(bytes) {
    if (bytes > 0) checkCuda(cudaMalloc(&data_, bytes), what);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Scratch of one forward on one stream; freed in stream order, so the kernels that use it finish first.
class StreamBuffer {
 public:
  StreamBuffer(size_t bytes, cudaStream_t stream, const char* what) : stream_(stream) {
    if (bytes > 0) checkCuda(cudaMallocAsync(&data_, bytes, stream), what);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  ~StreamBuffer() {
    if (data_ != nullptr) cudaFreeAsync(data_, stream_);
  }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

// A stream of its own for one call (forwards on one layer may run from several worker threads at once).
class OwnedStream {
 public:
  OwnedStream() { checkCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a CUDA stream"); }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  ~OwnedStream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }
  void synchronize(const char* what) const { checkCuda(cudaStreamSynchronize(stream_), what); }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace dynamoe::cuda
