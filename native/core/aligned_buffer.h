// Owning, 64-byte aligned byte buffer; allocation failure becomes a dynamoe::Error.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "errors.h"

namespace dynamoe {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;  // one cache line, and a full AVX-512 register

  enum class Fill { Zero, Uninitialized };  // scratch that kernels fully overwrite skips the memset

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes, Fill fill = Fill::Zero) : bytes_(bytes) {
    if (bytes == 0) return;
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    data_ = std::aligned_alloc(kAlignment, rounded);
    if (data_ == nullptr) {
      throw Error(code::kOutOfMemory, "could not allocate " + std::to_string(bytes) + " bytes");
    }
    if (fill == Fill::Zero) std::memset(data_, 0, rounded);
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept { *this = std::move(other); }
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  ~AlignedBuffer() { std::free(data_); }

  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace dynamoe
