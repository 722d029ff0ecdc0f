// Keys and values of every attention layer for one sequence, appended to as the sequence grows, and the scratch
// that sequence's forward steps reuse.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../core/aligned_buffer.h"
#include "../core/errors.h"
#include "../core/model_step.h"
#include "thread_scratch.h"

namespace dynamoe::cpu {

class KvCache final : public Sequence {
 public:
  // kvWidths[slot]: floats per position of attention layer `slot` (kv heads x head dim). The step scratch comes
  // from `scratchPool` and goes back to it with the cache.
  KvCache(const std::vector<int>& kvWidths, int capacity, std::shared_ptr<ScratchPool> scratchPool)
      : capacity_(capacity),
        widths_(kvWidths),
        scratchPool_(std::move(scratchPool)),
        stepScratch_(scratchPool_->take()) {
    for (int width : kvWidths) {
      const size_t bytes = static_cast<size_t>(capacity) * width * sizeof(float);
      keys_.emplace_back(bytes, AlignedBuffer::Fill::Uninitialized);
      values_.emplace_back(bytes, AlignedBuffer::Fill::Uninitialized);
    }
  }
  ~KvCache() override { scratchPool_->give(std::move(stepScratch_)); }
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int capacity() const override { return capacity_; }
  int length() const override { return length_; }
  // Positions are committed only when a whole forward step succeeded.
  void commit(int tokens) { length_ += tokens; }
  void reset() override { length_ = 0; }
  // Throws before a step that would not fit.
  void reserve(int tokens) const {
    if (length_ + tokens > capacity_) {
      throw Error(code::kShape, "the sequence would hold " + std::to_string(length_ + tokens) +
                                    " tokens but its context is " + std::to_string(capacity_) + " tokens");
    }
  }
  int width(int slot) const { return widths_[slot]; }
  float* keys(int slot) { return keys_[slot].as<float>(); }
  float* values(int slot) { return values_[slot].as<float>(); }
  size_t bytes() const override {
    size_t total = 0;
    for (const AlignedBuffer& b : keys_) total += 2 * b.bytes();
    return total;
  }
  // Activations and kernel scratch of this sequence's steps: grown to the largest step so far (at most `capacity`
  // tokens), kept until the sequence goes. One step at a time runs on a sequence.
  ScratchBuffers& stepScratch() { return *stepScratch_; }

 private:
  int capacity_;
  int length_ = 0;
  std::vector<int> widths_;
  std::vector<AlignedBuffer> keys_;
  std::vector<AlignedBuffer> values_;
  std::shared_ptr<ScratchPool> scratchPool_;
  std::unique_ptr<ScratchBuffers> stepScratch_;
};

}  // namespace dynamoe::cpu
