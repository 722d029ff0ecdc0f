#include "kv_pool.h"

#include <string>

#include "../core/errors.h"

namespace dynamoe::cpu {

KvBlockPool::KvBlockPool(std::vector<int> kvWidths, std::vector<int> valueWidths, int blocks)
    : widths_{std::move(kvWidths), std::move(valueWidths)}, blocks_(blocks),
      chunks_((blocks + kChunkBlocks - 1) / kChunkBlocks) {
  if (widths_[1].size() != widths_[0].size()) throw Error(code::kShape, "one value width per KV slot is needed");
  // Only the floats a block holds count: a keys-only slot (MLA's latent) costs its key row alone.
  for (const std::vector<int>& part : widths_) {
    for (int width : part) blockBytes_ += static_cast<size_t>(kBlockTokens) * width * sizeof(float);
  }
}

void KvBlockPool::take(int count, std::vector<int32_t>& held) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int unallocated = blocks_ - allocatedChunks_ * kChunkBlocks;
  if (count > static_cast<int>(free_.size()) + std::max(0, unallocated)) {
    throw Error(code::kOutOfMemory,
                "the KV pool has " + std::to_string(free_.size() + std::max(0, unallocated)) + " free blocks of " +
                    std::to_string(kBlockTokens) + " positions and this step needs " + std::to_string(count) +
                    " more (the pool holds " + std::to_string(static_cast<long long>(blocks_) * kBlockTokens) +
                    " positions; load the model with a larger kvPoolTokens or run fewer sequences at once)");
  }
  while (static_cast<int>(free_.size()) < count) {
    // A new chunk; its blocks are pushed so that the lowest id is taken first.
    auto chunk = std::make_unique<Chunk>();
    for (size_t slot = 0; slot < widths_[0].size(); ++slot) {
      for (int part = 0; part < 2; ++part) {
        const size_t floats = static_cast<size_t>(kChunkBlocks) * kBlockTokens * widths_[part][slot];
        chunk->storage.emplace_back(floats * sizeof(float), AlignedBuffer::Fill::Uninitialized);
      }
    }
    const int first = allocatedChunks_ * kChunkBlocks;
    chunks_[allocatedChunks_++] = std::move(chunk);
    for (int b = std::min(blocks_, first + kChunkBlocks) - 1; b >= first; --b) free_.push_back(b);
  }
  for (int i = 0; i < count; ++i) {
    held.push_back(free_.back());
    free_.pop_back();
  }
}

void KvBlockPool::give(const std::vector<int32_t>& blocks) {
  std::lock_guard<std::mutex> lock(mutex_);
  free_.insert(free_.end(), blocks.rbegin(), blocks.rend());
}

KvPoolState KvBlockPool::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  KvPoolState state;
  state.blockTokens = kBlockTokens;
  state.blocks = blocks_;
  state.freeBlocks = static_cast<int>(free_.size()) + blocks_ - std::min(blocks_, allocatedChunks_ * kChunkBlocks);
  state.blockBytes = blockBytes_;
  return state;
}

}  // namespace dynamoe::cpu
