// Split-key ("flash-decoding") causal attention over the paged device KV cache, shared by the attention op
// (grouped-query heads) and the MLA op (one latent "kv head" of every head, the latent serving as value too).
//
// Each block takes one (query row, group of up to kGroup query heads sharing a kv head, chunk of the row's visible
// key range): it scores the chunk's keys tile by tile with an online softmax in fp32 and leaves a partial
// (max, sum, acc[valueDim]) per head. The combine kernel then merges a row's chunk partials in chunk order (plus the
// head's attention sink, if any) and normalises. No atomics anywhere: every output is added in one fixed order.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "device_kv_pool.h"
#include "attention_range.cuh"
#include "element_types.cuh"

namespace dynamoe::cuda {

constexpr int kAttentionThreads = 128;
constexpr int kAttentionWarps = kAttentionThreads / 32;
constexpr int kAttentionTileKeys = 128;  // keys scored per tile (the scores of one tile live in shared memory)

struct SplitAttention {
  // Head h's query of block row r (step row firstRow + r) at query + r * queryStride + h * keyDim.
  const float* query = nullptr;
  size_t queryStride = 0;
  // Position p of a row's sequence lives at pool row R = table[p / kDeviceBlockTokens] * kDeviceBlockTokens +
  // p % kDeviceBlockTokens; kv head k's key at keys + R * keyRowStride + k * keyDim, its value at
  // values + R * valueRowStride + k * valueDim, in the cache's element type (launchSplitAttention's KvT).
  const void* keys = nullptr;
  const void* values = nullptr;
  size_t keyRowStride = 0;
  size_t valueRowStride = 0;
  const int32_t* blockTables = nullptr;  // [segments][blockTableWidth]
  int blockTableWidth = 0;
  const int32_t* rowPositions = nullptr;  // [step rows]
  const int32_t* rowSegments = nullptr;   // [step rows]
  int firstRow = 0;                       // step row of block row 0 (launches may cover a slice of the step)
  int heads = 0, kvHeads = 0, keyDim = 0, valueDim = 0;
  int groupBlocks = 0;  // blocks per kv head: ceil((heads / kvHeads) / kGroup)
  int window = 0;       // 0: every earlier position
  int chunk = 0;        // chunked attention (AttentionNode::chunk); 0: none
  int temperatureFloor = 0;     // attention temperature (AttentionNode); 0: none
  float temperatureScale = 0.0f;
  float scale = 1.0f;
  int chunkKeys = 0;    // keys per chunk, a multiple of kAttentionTileKeys; chunk c starts at first + c * chunkKeys
  int chunks = 0;
  // Partials of block row r, head h, chunk c at index (r * heads + h) * chunks + c (acc: times valueDim).
  float* partialMax = nullptr;
  float* partialSum = nullptr;
  float* partialAcc = nullptr;
};

struct AttentionCombine {
  const float* partialMax = nullptr;
  const float* partialSum = nullptr;
  const float* partialAcc = nullptr;
  const int32_t* rowPositions = nullptr;
  int firstRow = 0;
  int heads = 0, valueDim = 0, window = 0, chunk = 0, chunkKeys = 0, chunks = 0;
  const float* sinks = nullptr;  // [heads] or null
  // Head h of block row r written at out + r * outStride + h * valueDim (valueDim floats).
  float* out = nullptr;
  size_t outStride = 0;
};

// Keys per chunk: fixed, so a row's chunks (and its bits) depend on its own visible range only, never on the rows
// beside it in a step (batch invariance, as on the CPU); two tiles keep a decode step's blocks numerous enough to
// fill the GPU from a few thousand positions of context.
constexpr int kAttentionChunkKeys = 2 * kAttentionTileKeys;

// How a step's key ranges are cut into chunks: chunk c of a row covers its visible keys first + c * chunkKeys on.
struct SplitPlan {
  int chunkKeys = kAttentionChunkKeys;
  int chunks = 1;  // enough for the longest visible range (`span`) of the step
};

inline SplitPlan planSplits(int span) {
  SplitPlan plan;
  plan.chunks = std::max(1, (span + kAttentionChunkKeys - 1) / kAttentionChunkKeys);
  return plan;
}

// Rows per launch so that their partials ([rows][heads][chunks] maxima and sums, times valueDim accumulators) stay
// within `budgetBytes`: a long prefill runs in slices of rows (the same bits: rows are independent).
inline int attentionRowsPerLaunch(int rows, int heads, int chunks, int valueDim, size_t budgetBytes) {
  const size_t perRow = static_cast<size_t>(heads) * chunks * (static_cast<size_t>(valueDim) + 2) * sizeof(float);
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>(rows, budgetBytes / perRow)));
}

namespace attention_detail {

// Sum of `value` over the warp; the xor butterfly leaves the same bits in every lane.
__device__ __forceinline__ float warpSum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// The warp sums of kCount values (a power of two up to 32) at once, in kCount - 1 + log2(32 / kCount) shuffles
// instead of kCount * 5: each xor step of the transpose hands half the values still held to the partner lane and
// adds the half it keeps, so after log2(kCount) steps every lane holds partial sums of one value
// (transposeSumIndex), which the remaining plain butterfly steps complete. The order of additions is fixed.
template <int kCount>
__device__ __forceinline__ float warpTransposeSum(float (&values)[kCount], int lane) {
  static_assert(kCount >= 1 && kCount <= 32 && (kCount & (kCount - 1)) == 0, "a power of two up to 32");
  int offset = 16;
#pragma unroll
  for (int half = kCount / 2; half >= 1; half /= 2, offset /= 2) {
    const bool upper = (lane & offset) != 0;  // keeps values [half, 2 * half), sends [0, half)
#pragma unroll
    for (int i = 0; i < half; ++i) {
      const float send = upper ? values[i] : values[i + half];
      const float keep = upper ? values[i + half] : values[i];
      values[i] = keep + __shfl_xor_sync(0xffffffffu, send, offset);
    }
  }
#pragma unroll
  for (; offset > 0; offset /= 2) values[0] += __shfl_xor_sync(0xffffffffu, values[0], offset);
  return values[0];
}

// Which of warpTransposeSum's values `lane` ends with: the lane bits of the transpose steps, high to low.
template <int kCount>
__device__ __forceinline__ int transposeSumIndex(int lane) {
  int index = 0;
  int offset = 16;
#pragma unroll
  for (int half = kCount / 2; half >= 1; half /= 2, offset /= 2) {
    if ((lane & offset) != 0) index += half;
  }
  return index;
}

// Whether `lane` writes its warpTransposeSum result: the first of the 32 / kCount lanes holding each value.
template <int kCount>
__device__ __forceinline__ bool transposeSumWriter(int lane) {
  return (lane & (32 / kCount - 1)) == 0;
}

__device__ __forceinline__ float warpMax(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// The pool row holding position p of the sequence whose block table is `table`.
__device__ __forceinline__ size_t poolRow(const int32_t* table, int p) {
  return static_cast<size_t>(table[p / kDeviceBlockTokens]) * kDeviceBlockTokens + p % kDeviceBlockTokens;
}

}  // namespace attention_detail

// The kernels are internal to each translation unit that launches them (no cross-unit kernel symbols).
namespace {

// Grid: (block rows, kvHeads * groupBlocks, chunks); kAttentionThreads threads. keyDim <= 32 * kKeySlices,
// valueDim <= kAttentionThreads * kValueSlots, kGroup a power of two up to 32; the cache holds KvT (f32 or bf16).
template <int kGroup, int kKeySlices, int kValueSlots, typename KvT>
__global__ void __launch_bounds__(kAttentionThreads) splitAttentionKernel(SplitAttention a) {
  using namespace attention_detail;
  const KvT* cacheKeys = static_cast<const KvT*>(a.keys);
  const KvT* cacheValues = static_cast<const KvT*>(a.values);
  const int local = blockIdx.x;
  const int row = a.firstRow + local;
  const int chunk = blockIdx.z;
  int first, visible;
  visibleRange(a.rowPositions[row], a.window, a.chunk, first, visible);
  const int begin = first + chunk * a.chunkKeys;
  if (begin >= visible) return;  // the row's range ends before this chunk (the same for the whole block)
  const int end = min(visible, begin + a.chunkKeys);

  const int groupSize = a.heads / a.kvHeads;
  const int kvHead = blockIdx.y / a.groupBlocks;
  const int inGroup = (blockIdx.y % a.groupBlocks) * kGroup;  // first head of this block within its group
  const int count = min(kGroup, groupSize - inGroup);         // query heads of this block
  const int firstHead = kvHead * groupSize + inGroup;
  const int32_t* table = a.blockTables + static_cast<size_t>(a.rowSegments[row]) * a.blockTableWidth;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;

  __shared__ float query[kGroup * kKeySlices * 32];        // [count][keyDim]
  __shared__ __align__(16) float scores[kGroup][kAttentionTileKeys];  // the tile's scores, then their exponentials
  __shared__ float runMax[kGroup], runSum[kGroup], rescale[kGroup];

  // The block's heads are adjacent, so their queries are count * keyDim contiguous floats.
  const float* rowQuery =
      a.query + static_cast<size_t>(local) * a.queryStride + static_cast<size_t>(firstHead) * a.keyDim;
  // Llama 4's temperature scales the row's scores: its query, once.
  const float temperature = attentionTemperatureAt(a.rowPositions[row], a.temperatureFloor, a.temperatureScale);
  for (int i = tid; i < count * a.keyDim; i += kAttentionThreads) query[i] = rowQuery[i] * temperature;
  if (tid < kGroup) {
    runMax[tid] = -INFINITY;
    runSum[tid] = 0.0f;
  }
  float acc[kGroup][kValueSlots];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
#pragma unroll
    for (int s = 0; s < kValueSlots; ++s) acc[g][s] = 0.0f;
  }
  __syncthreads();

  for (int tileStart = begin; tileStart < end; tileStart += kAttentionTileKeys) {
    const int n = min(kAttentionTileKeys, end - tileStart);
    // Scores: a warp per key, its lanes across the key (coalesced), each key read once for all the block's heads.
    for (int j = warp; j < n; j += kAttentionWarps) {
      const KvT* key =
          cacheKeys + poolRow(table, tileStart + j) * a.keyRowStride + static_cast<size_t>(kvHead) * a.keyDim;
      float k[kKeySlices];
#pragma unroll
      for (int i = 0; i < kKeySlices; ++i) {
        const int d = lane + 32 * i;
        k[i] = d < a.keyDim ? ElementOps<KvT>::toFloat(key[d]) : 0.0f;
      }
      float dots[kGroup];
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        dots[g] = 0.0f;
        if (g < count) {
#pragma unroll
          for (int i = 0; i < kKeySlices; ++i) {
            const int d = lane + 32 * i;
            if (d < a.keyDim) dots[g] = fmaf(query[g * a.keyDim + d], k[i], dots[g]);
          }
        }
      }
      const float dot = warpTransposeSum<kGroup>(dots, lane);
      const int g = transposeSumIndex<kGroup>(lane);
      if (transposeSumWriter<kGroup>(lane) && g < count) scores[g][j] = dot * a.scale;
    }
    __syncthreads();
    // Online softmax: a warp per head takes the tile's max, rescales the running sum, exponentiates the scores.
    for (int g = warp; g < count; g += kAttentionWarps) {
      const float previous = runMax[g];
      float tileMax = -INFINITY;
      for (int j = lane; j < n; j += 32) tileMax = fmaxf(tileMax, scores[g][j]);
      const float next = fmaxf(previous, warpMax(tileMax));
      float sum = 0.0f;
      for (int j = lane; j < n; j += 32) {
        const float e = expf(scores[g][j] - next);
        scores[g][j] = e;
        sum += e;
      }
      sum = warpSum(sum);
      __syncwarp();  // every lane has read runMax[g] before lane 0 replaces it
      if (lane == 0) {
        const float alpha = expf(previous - next);  // 0 on the first tile (previous is -inf)
        rescale[g] = alpha;
        runMax[g] = next;
        runSum[g] = runSum[g] * alpha + sum;
      }
    }
    __syncthreads();
    // Values: threads across the value dimensions (coalesced), each value row read once for all the block's heads.
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      if (g < count) {
        const float alpha = rescale[g];
#pragma unroll
        for (int s = 0; s < kValueSlots; ++s) acc[g][s] *= alpha;
      }
    }
    // Four keys at a time: four value rows' loads in flight per thread, and one 16-byte broadcast read of each
    // head's four weights; then the tile's last n % 4 keys one by one. Either way keys are added in order.
    int j = 0;
    for (; j + 4 <= n; j += 4) {
      float v[4][kValueSlots];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const KvT* value = cacheValues + poolRow(table, tileStart + j + u) * a.valueRowStride +
                           static_cast<size_t>(kvHead) * a.valueDim;
#pragma unroll
        for (int s = 0; s < kValueSlots; ++s) {
          const int d = tid + s * kAttentionThreads;
          v[u][s] = d < a.valueDim ? ElementOps<KvT>::toFloat(value[d]) : 0.0f;
        }
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g < count) {
          const float4 p = *reinterpret_cast<const float4*>(&scores[g][j]);  // one address per warp: a broadcast
#pragma unroll
          for (int s = 0; s < kValueSlots; ++s) {
            acc[g][s] = fmaf(p.x, v[0][s], acc[g][s]);
            acc[g][s] = fmaf(p.y, v[1][s], acc[g][s]);
            acc[g][s] = fmaf(p.z, v[2][s], acc[g][s]);
            acc[g][s] = fmaf(p.w, v[3][s], acc[g][s]);
          }
        }
      }
    }
    for (; j < n; ++j) {
      const KvT* value =
          cacheValues + poolRow(table, tileStart + j) * a.valueRowStride + static_cast<size_t>(kvHead) * a.valueDim;
      float v[kValueSlots];
#pragma unroll
      for (int s = 0; s < kValueSlots; ++s) {
        const int d = tid + s * kAttentionThreads;
        v[s] = d < a.valueDim ? ElementOps<KvT>::toFloat(value[d]) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g < count) {
          const float p = scores[g][j];
#pragma unroll
          for (int s = 0; s < kValueSlots; ++s) acc[g][s] = fmaf(p, v[s], acc[g][s]);
        }
      }
    }
    __syncthreads();  // the next tile overwrites scores and rescale
  }

  // Head firstHead's partial of this chunk; head firstHead + g's is a.chunks further per g.
  const size_t firstPartial = (static_cast<size_t>(local) * a.heads + firstHead) * a.chunks + chunk;
  if (tid < count) {
    a.partialMax[firstPartial + static_cast<size_t>(tid) * a.chunks] = runMax[tid];
    a.partialSum[firstPartial + static_cast<size_t>(tid) * a.chunks] = runSum[tid];
  }
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (g < count) {
      float* out = a.partialAcc + (firstPartial + static_cast<size_t>(g) * a.chunks) * a.valueDim;
#pragma unroll
      for (int s = 0; s < kValueSlots; ++s) {
        const int d = tid + s * kAttentionThreads;
        if (d < a.valueDim) out[d] = acc[g][s];
      }
    }
  }
}

// Grid: (block rows, heads); kAttentionThreads threads. Merges a (row, head)'s chunks in chunk order.
__global__ void __launch_bounds__(kAttentionThreads) combineAttentionKernel(AttentionCombine c) {
  using namespace attention_detail;
  const int local = blockIdx.x;
  const int head = blockIdx.y;
  int first, visible;
  visibleRange(c.rowPositions[c.firstRow + local], c.window, c.chunk, first, visible);
  const int used = (visible - first + c.chunkKeys - 1) / c.chunkKeys;  // chunks the attention kernel filled
  const size_t base = (static_cast<size_t>(local) * c.heads + head) * c.chunks;
  // Every thread derives the same max and denominator in the same order (the sink's logit joins both, no value).
  float maxScore = c.sinks != nullptr ? c.sinks[head] : -INFINITY;
  for (int k = 0; k < used; ++k) maxScore = fmaxf(maxScore, c.partialMax[base + k]);
  float sum = c.sinks != nullptr ? expf(c.sinks[head] - maxScore) : 0.0f;
  for (int k = 0; k < used; ++k) sum += c.partialSum[base + k] * expf(c.partialMax[base + k] - maxScore);
  const float inverse = 1.0f / sum;
  float* out = c.out + static_cast<size_t>(local) * c.outStride + static_cast<size_t>(head) * c.valueDim;
  for (int d = threadIdx.x; d < c.valueDim; d += kAttentionThreads) {
    float total = 0.0f;
    for (int k = 0; k < used; ++k) {
      total = fmaf(c.partialAcc[(base + k) * c.valueDim + d], expf(c.partialMax[base + k] - maxScore), total);
    }
    out[d] = total * inverse;
  }
}

// Launches the split kernels and the combine for `rows` block rows; `attention`'s partial pointers must hold
// rows * heads * chunks (times valueDim) floats.
template <int kGroup, int kKeySlices, int kValueSlots, typename KvT>
inline void launchSplitAttention(const SplitAttention& attention, const AttentionCombine& combine, int rows,
                                 cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(attention.kvHeads * attention.groupBlocks),
                  static_cast<unsigned>(attention.chunks));
  splitAttentionKernel<kGroup, kKeySlices, kValueSlots, KvT><<<grid, kAttentionThreads, 0, stream>>>(attention);
  const dim3 combineGrid(static_cast<unsigned>(rows), static_cast<unsigned>(attention.heads));
  combineAttentionKernel<<<combineGrid, kAttentionThreads, 0, stream>>>(combine);
}

}  // namespace

}  // namespace dynamoe::cuda
