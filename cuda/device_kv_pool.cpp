#include "device_kv_pool.h"

#include <string>

#include "../native/core/errors.h"
#include "device_memory.h"

namespace dynamoe::cuda {

namespace {

size_t blockBytesOf(const std::vector<int>& keyWidths, const std::vector<int>& valueWidths, DType dtype) {
  size_t bytes = 0;
  for (size_t slot = 0; slot < keyWidths.size(); ++slot) {
    bytes += static_cast<size_t>(kDeviceBlockTokens) * (keyWidths[slot] + valueWidths[slot]) * dtypeBytes(dtype);
  }
  return bytes;
}

}  // namespace

size_t DeviceKvPool::bytesFor(const std::vector<int>& keyWidths, const std::vector<int>& valueWidths, int blocks,
                              DType dtype) {
  return blockBytesOf(keyWidths, valueWidths, dtype) * static_cast<size_t>(blocks);
}

DeviceKvPool::DeviceKvPool(std::vector<int> keyWidths, std::vector<int> valueWidths, int blocks, DType dtype)
    : blocks_(blocks), blockBytes_(blockBytesOf(keyWidths, valueWidths, dtype)) {
  if (dtype != DType::F32 && dtype != DType::BF16) throw Error(code::kInternal, "a KV pool holds f32 or bf16");
  if (valueWidths.size() != keyWidths.size()) throw Error(code::kShape, "one value width per KV slot is needed");
  const size_t bytes = blockBytes_ * static_cast<size_t>(blocks);
  requireFreeMemory(bytes, ("the KV pool (" + std::to_string(static_cast<long long>(blocks) * kDeviceBlockTokens) +
                            " positions of " + std::to_string(keyWidths.size()) + " attention layers)")
                               .c_str());
  // One allocation, made now: a step never allocates cache memory, and the pool's size is the model's budget.
  storage_ = DeviceBuffer(bytes, "allocating the KV pool");
  char* next = storage_.as<char>();
  const size_t element = dtypeBytes(dtype);
  for (size_t slot = 0; slot < keyWidths.size(); ++slot) {
    KvSlotView view;
    view.keyWidth = keyWidths[slot];
    view.valueWidth = valueWidths[slot];
    view.dtype = dtype;
    view.keys = next;
    next += static_cast<size_t>(blocks) * kDeviceBlockTokens * view.keyWidth * element;
    if (view.valueWidth > 0) {
      view.values = next;
      next += static_cast<size_t>(blocks) * kDeviceBlockTokens * view.valueWidth * element;
    }
    slots_.push_back(view);
  }
  // The lowest id is taken first.
  for (int b = blocks - 1; b >= 0; --b) free_.push_back(b);
}

void DeviceKvPool::take(int count, std::vector<int32_t>& held) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (count > static_cast<int>(free_.size())) {
    throw Error(code::kOutOfMemory,
                "the KV pool has " + std::to_string(free_.size()) + " free blocks of " +
                    std::to_string(kDeviceBlockTokens) + " positions and this step needs " + std::to_string(count) +
                    " more (the pool holds " + std::to_string(static_cast<long long>(blocks_) * kDeviceBlockTokens) +
                    " positions; load the model with a larger kvPoolTokens or run fewer sequences at once)");
  }
  for (int i = 0; i < count; ++i) {
    held.push_back(free_.back());
    free_.pop_back();
  }
}

void DeviceKvPool::give(const std::vector<int32_t>& blocks) {
  std::lock_guard<std::mutex> lock(mutex_);
  free_.insert(free_.end(), blocks.rbegin(), blocks.rend());
}

KvPoolState DeviceKvPool::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  KvPoolState state;
  state.blockTokens = kDeviceBlockTokens;
  state.blocks = blocks_;
  state.freeBlocks = static_cast<int>(free_.size());
  state.blockBytes = blockBytes_;
  return state;
}

void DeviceSequence::reset() {
  length_ = 0;
  pool_->give(blocks_);
  blocks_.clear();
}

void DeviceSequence::reserve(int tokens) {
  if (length_ + tokens > capacity_) {
    throw Error(code::kShape, "the sequence would hold " + std::to_string(length_ + tokens) +
                                  " tokens but its context is " + std::to_string(capacity_) + " tokens");
  }
  const int needed = (length_ + tokens + kDeviceBlockTokens - 1) / kDeviceBlockTokens;
  if (needed > static_cast<int>(blocks_.size())) pool_->take(needed - static_cast<int>(blocks_.size()), blocks_);
}

}  // namespace dynamoe::cuda
