#include "thread_scratch.h"

#include <algorithm>
#include <array>

namespace dynamoe::cpu {

void* threadScratch(ScratchSlot slot, size_t bytes, AlignedBuffer& oversize) {
  if (bytes > kRetainedScratchBytes) {
    oversize = AlignedBuffer(bytes, AlignedBuffer::Fill::Uninitialized);
    return oversize.as<void>();
  }
  thread_local std::array<AlignedBuffer, static_cast<size_t>(ScratchSlot::Count)> buffers;
  AlignedBuffer& buffer = buffers[static_cast<size_t>(slot)];
  // Grown to at least 64 KiB and then by doubling, so a few sizes settle it.
  if (buffer.bytes() < bytes) {
    size_t grown = size_t{64} << 10;
    while (grown < bytes) grown *= 2;
    buffer = AlignedBuffer(std::min(grown, kRetainedScratchBytes), AlignedBuffer::Fill::Uninitialized);
  }
  return buffer.as<void>();
}

}  // namespace dynamoe::cpu
