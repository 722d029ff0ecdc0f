// A whole model's KV cache in GPU memory: one allocation, sized when the model is made (its budget, checked against
// the GPU's free memory), cut into blocks of kDeviceBlockTokens positions of every attention slot. Sequences hold
// blocks by index; a step uploads each sequence's block table and the attention kernels find a position's row as
// slot.keys + (table[p / kDeviceBlockTokens] * kDeviceBlockTokens + p % kDeviceBlockTokens) * slot.keyWidth.
// 16-bit models keep their cache in bf16 (half the memory and half the bytes a decode step reads); f32 models in f32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../native/core/dtype.h"
#include "../native/core/model_step.h"
#include "device_buffer.h"

namespace dynamoe::cuda {

constexpr int kDeviceBlockTokens = 32;

// One attention slot's cache as the kernels read it: keys [blocks][kDeviceBlockTokens][keyWidth] and values
// [blocks][kDeviceBlockTokens][valueWidth] of `dtype` (f32 or bf16; values null when valueWidth is 0: MLA's latent
// slot keeps keys only).
struct KvSlotView {
  void* keys = nullptr;
  void* values = nullptr;
  int keyWidth = 0;
  int valueWidth = 0;
  DType dtype = DType::F32;
};

// The cache's element type for a model of `modelDtype`.
inline DType kvDtypeFor(DType modelDtype) { return modelDtype == DType::F32 ? DType::F32 : DType::BF16; }

class DeviceKvPool {
 public:
  // Throws ERR_DYNAMOE_OUT_OF_MEMORY naming the sizes when the GPU lacks the pool's memory.
  DeviceKvPool(std::vector<int> keyWidths, std::vector<int> valueWidths, int blocks, DType dtype);
  DeviceKvPool(const DeviceKvPool&) = delete;
  DeviceKvPool& operator=(const DeviceKvPool&) = delete;

  // Appends `count` blocks to `held`, or takes none and throws ERR_DYNAMOE_OUT_OF_MEMORY when fewer are free.
  void take(int count, std::vector<int32_t>& held);
  void give(const std::vector<int32_t>& blocks);
  KvPoolState state() const;
  KvSlotView slot(int index) const { return slots_[index]; }
  int slotCount() const { return static_cast<int>(slots_.size()); }
  size_t bytes() const { return storage_.bytes(); }

  // The bytes a pool of `blocks` blocks of these widths needs.
  static size_t bytesFor(const std::vector<int>& keyWidths, const std::vector<int>& valueWidths, int blocks,
                         DType dtype);

 private:
  DeviceBuffer storage_;
  std::vector<KvSlotView> slots_;
  int blocks_;
  size_t blockBytes_;
  mutable std::mutex mutex_;
  std::vector<int32_t> free_;  // the last given back on top
};

// One sequence's blocks of a device pool.
class DeviceSequence final : public Sequence {
 public:
  DeviceSequence(std::shared_ptr<DeviceKvPool> pool, int capacity) : pool_(std::move(pool)), capacity_(capacity) {}
  ~DeviceSequence() override { pool_->give(blocks_); }
  DeviceSequence(const DeviceSequence&) = delete;
  DeviceSequence& operator=(const DeviceSequence&) = delete;

  int capacity() const override { return capacity_; }
  int length() const override { return length_; }
  void reset() override;
  size_t bytes() const override { return blocks_.size() * pool_->state().blockBytes; }
  // Room for `tokens` more positions: ERR_DYNAMOE_SHAPE past the capacity, ERR_DYNAMOE_OUT_OF_MEMORY when the pool
  // lacks the blocks.
  void reserve(int tokens);
  void commit(int tokens) { length_ += tokens; }
  const DeviceKvPool& pool() const { return *pool_; }
  const std::vector<int32_t>& blocks() const { return blocks_; }

 private:
  std::shared_ptr<DeviceKvPool> pool_;
  int capacity_;
  int length_ = 0;
  std::vector<int32_t> blocks_;
};

}  // namespace dynamoe::cuda
