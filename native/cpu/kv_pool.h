// A model's KV pool: the keys and values of every sequence, in blocks of kBlockTokens positions of every attention
// layer. The pool's size is fixed when the model is made (its budget); memory is allocated a chunk of blocks at a
// time as blocks are first needed, and a block given back is the next one taken (its pages are warm).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../core/aligned_buffer.h"
#include "../core/model_step.h"

namespace dynamoe::cpu {

class KvBlockPool {
 public:
  // Positions per block: a multiple of every attention kernel's key run (up to 16 positions), so runs never span
  // two blocks.
  static constexpr int kBlockTokens = 32;
  static constexpr int kChunkBlocks = 16;  // blocks allocated together

  // kvWidths[slot]: floats per position of attention layer `slot`'s keys, valueWidths[slot] of its values (0: the
  // slot keeps keys only and has no value storage); room for `blocks` blocks.
  KvBlockPool(std::vector<int> kvWidths, std::vector<int> valueWidths, int blocks);
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  // Appends `count` blocks to `held`, or, when fewer are free, takes none and throws ERR_DYNAMOE_OUT_OF_MEMORY.
  void take(int count, std::vector<int32_t>& held);
  // Gives `blocks` back (any order).
  void give(const std::vector<int32_t>& blocks);
  KvPoolState state() const;

  int width(int slot) const { return widths_[0][slot]; }
  int valueWidth(int slot) const { return widths_[1][slot]; }
  // Block `block`'s keys (values) of layer `slot`: kBlockTokens rows of width(slot) (valueWidth(slot)) floats.
  float* keys(int slot, int32_t block) const { return at(slot, block, 0); }
  float* values(int slot, int32_t block) const { return at(slot, block, 1); }

 private:
  struct Chunk {
    std::vector<AlignedBuffer> storage;  // [slot * 2 + (0 keys, 1 values)]: kChunkBlocks blocks each
  };
  float* at(int slot, int32_t block, int part) const {
    const Chunk& chunk = *chunks_[block / kChunkBlocks];
    const size_t floatsPerBlock = static_cast<size_t>(kBlockTokens) * widths_[part][slot];
    return const_cast<float*>(chunk.storage[slot * 2 + part].as<float>()) + (block % kChunkBlocks) * floatsPerBlock;
  }

  std::vector<int> widths_[2];  // [0 keys, 1 values][slot]
  int blocks_;
  size_t blockBytes_ = 0;
  mutable std::mutex mutex_;
  // Sized once: a reader finds its block's chunk without the lock (chunks are set before their blocks are handed
  // out, under the lock, and never moved).
  std::vector<std::unique_ptr<Chunk>> chunks_;
  int allocatedChunks_ = 0;
  std::vector<int32_t> free_;  // allocated blocks held by no sequence; the last given back on top
};

}  // namespace dynamoe::cpu
