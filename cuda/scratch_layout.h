// Carves one scratch allocation into aligned arrays: offsets are laid out first (`add`), then turned into pointers
// into the allocation (`at`). 256-byte alignment satisfies every vector load and cp.async in the kernels.
#pragma once

#include <cstddef>

#include "device_buffer.h"

namespace dynamoe::cuda {

constexpr size_t kScratchAlignment = 256;

class ScratchLayout {
 public:
  size_t add(size_t bytes) {
    const size_t offset = bytes_;
    bytes_ += (bytes + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;
    return offset;
  }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
};

template <typename T>
T* at(const StreamBuffer& buffer, size_t offset) {
  return reinterpret_cast<T*>(buffer.as<char>() + offset);
}

}  // namespace dynamoe::cuda
