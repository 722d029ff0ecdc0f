// Prefill attention on tensor cores: a long segment's rows attend through two GEMMs per kv head on the MoE grouped
// GEMM's tensor-core kernel (dense case): scores = Q K^T for the group's query heads together, a causal softmax
// (window, sinks and scale applied there) into bf16 probabilities, then P V. Rows go in blocks whose scores fit a
// scratch budget, and each block multiplies only the keys its last row can see.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../native/core/dtype.h"
#include "device_kv_pool.h"

namespace dynamoe::cuda {

// Segments with at least this many rows take the tensor-core path (decode and short chunks keep the split kernel).
constexpr int kPrefillAttentionMinRows = 64;

struct PrefillAttention {
  const float* query = nullptr;  // the segment's first row's query: [rows][queryStride], head h at h * headDim
  size_t queryStride = 0;
  float* out = nullptr;          // [rows][outStride], head h at h * headDim
  size_t outStride = 0;
  KvSlotView slot;               // keys and values, f32 rows of kvHeads * headDim
  const int32_t* blockTable = nullptr;  // the segment's pool blocks (device)
  int rows = 0;
  int position = 0;              // of the first row in its sequence
  int heads = 0, kvHeads = 0, headDim = 0;
  int window = 0;                // 0: every earlier position
  int chunk = 0;                 // chunked attention; 0: none
  int temperatureFloor = 0;      // attention temperature; 0: none
  float temperatureScale = 0.0f;
  float scale = 1.0f;
  const float* sinks = nullptr;  // [heads] device, or null
  DType dtype = DType::BF16;     // of the GEMM operands (f16 or bf16)
  int multiprocessors = 0;
};

// Enqueues the segment's attention on `stream` (its keys and values already appended to the cache): the fused flash
// kernel where it applies and DYNAMOE_FLASH_PREFILL=1 is set (read at each call), else the two GEMMs.
void enqueuePrefillAttention(const PrefillAttention& attention, cudaStream_t stream);

// The fused kernel (attention_flash.cu): head dimensions up to kFlashMaxHeadDim, f16 or bf16 operands.
constexpr int kFlashMaxHeadDim = 128;
bool flashPrefillApplies(const PrefillAttention& attention);
void enqueueFlashPrefillAttention(const PrefillAttention& attention, cudaStream_t stream);

}  // namespace dynamoe::cuda
