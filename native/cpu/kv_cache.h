// Keys and values of every attention layer for one sequence: blocks of its model's KV pool, taken as the sequence
// grows and given back when it is reset or goes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/model_step.h"
#include "kv_pool.h"

namespace dynamoe::cpu {

class KvCache final : public Sequence {
 public:
  KvCache(std::shared_ptr<KvBlockPool> pool, int capacity) : pool_(std::move(pool)), capacity_(capacity) {}
  ~KvCache() override { pool_->give(blocks_); }
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int capacity() const override { return capacity_; }
  int length() const override { return length_; }
  // Positions are committed only when a whole forward step succeeded.
  void commit(int tokens) { length_ += tokens; }
  void reset() override {
    length_ = 0;
    pool_->give(blocks_);
    blocks_.clear();
  }
  size_t bytes() const override { return blocks_.size() * pool_->state().blockBytes; }
  // Makes room for `tokens` more positions before a step: throws ERR_DYNAMOE_SHAPE past the capacity and
  // ERR_DYNAMOE_OUT_OF_MEMORY when the pool lacks the blocks.
  void reserve(int tokens) {
    if (length_ + tokens > capacity_) {
      throw Error(code::kShape, "the sequence would hold " + std::to_string(length_ + tokens) +
                                    " tokens but its context is " + std::to_string(capacity_) + " tokens");
    }
    const int needed = (length_ + tokens + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens;
    if (needed > static_cast<int>(blocks_.size())) pool_->take(needed - static_cast<int>(blocks_.size()), blocks_);
  }
  const KvBlockPool& pool() const { return *pool_; }
  const std::vector<int32_t>& blocks() const { return blocks_; }
  // Where position `position`'s key (value) of layer `slot` goes.
  float* keyAt(int slot, int position) const { return rowAt(pool_->keys(slot, block(position)), slot, position); }
  float* valueAt(int slot, int position) const { return rowAt(pool_->values(slot, block(position)), slot, position); }

 private:
  int32_t block(int position) const { return blocks_[position / KvBlockPool::kBlockTokens]; }
  float* rowAt(float* block, int slot, int position) const {
    return block + static_cast<size_t>(position % KvBlockPool::kBlockTokens) * pool_->width(slot);
  }

  std::shared_ptr<KvBlockPool> pool_;
  int capacity_;
  int length_ = 0;
  std::vector<int32_t> blocks_;
};

}  // namespace dynamoe::cpu
