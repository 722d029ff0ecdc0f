#include "thread_scratch.h"

#include <algorithm>

namespace dynamoe::cpu {

void* ScratchBuffers::get(ScratchSlot slot, size_t bytes, AlignedBuffer& oversize) {
  if (bytes > retainedBytes_) {
    oversize = AlignedBuffer(bytes, AlignedBuffer::Fill::Uninitialized);
    return oversize.as<void>();
  }
  AlignedBuffer& buffer = buffers_[static_cast<size_t>(slot)];
  // Grown to at least 64 KiB and then by doubling, so a few sizes settle it.
  if (buffer.bytes() < bytes) {
    size_t grown = size_t{64} << 10;
    while (grown < bytes) grown *= 2;
    buffer = AlignedBuffer(std::min(grown, retainedBytes_), AlignedBuffer::Fill::Uninitialized);
  }
  return buffer.as<void>();
}

size_t ScratchBuffers::bytes() const {
  size_t total = 0;
  for (const AlignedBuffer& buffer : buffers_) total += buffer.bytes();
  return total;
}

ScratchBuffers& threadScratchBuffers() {
  thread_local ScratchBuffers buffers(kRetainedScratchBytes);
  return buffers;
}

}  // namespace dynamoe::cpu
