#include "thread_scratch.h"

#include <algorithm>
#include <stdexcept>

namespace dynamoe::cpu {

ScratchBuffers& workspaceScratch(Workspace& workspace) {
  auto* scratch = dynamic_cast<ScratchBuffers*>(&workspace);
  if (scratch == nullptr) throw Error(code::kInternal, "a CPU layer was given another backend's workspace");
  return *scratch;
}

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

void* ScratchBuffers::get(ScratchSlot slot, size_t bytes) {
  if (bytes > retainedBytes_) throw std::logic_error("ScratchBuffers::get without `oversize` on a capped set");
  AlignedBuffer unused;  // never filled: the request is within the retained limit
  return get(slot, bytes, unused);
}

std::unique_ptr<ScratchBuffers> ScratchPool::take() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      std::unique_ptr<ScratchBuffers> set = std::move(idle_.back());
      idle_.pop_back();
      return set;
    }
  }
  return std::make_unique<ScratchBuffers>();
}

void ScratchPool::give(std::unique_ptr<ScratchBuffers> set) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!closed_ && idle_.size() < kIdleScratchSets) idle_.push_back(std::move(set));
  // otherwise `set` is freed here
}

void ScratchPool::close() {
  std::vector<std::unique_ptr<ScratchBuffers>> freed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    freed.swap(idle_);
  }  // the sets are freed here, outside the lock
}

ScratchBuffers& threadScratchBuffers() {
  thread_local ScratchBuffers buffers(kRetainedScratchBytes);
  return buffers;
}

}  // namespace dynamoe::cpu
