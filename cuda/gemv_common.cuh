// What the decode GEMVs share (expert_gemv.cu on f32/f16/bf16 weights, quant_gemv.cu on GGUF blocks): the warp
// layout over weight rows, the SwiGLU gate/up row pairing and the per-row epilogue.
#pragma once

#include <cuda_runtime.h>

#include "element_types.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda::gemv {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * kWarpSize;
// A warp owns 4 weight rows: 4 output columns (Scaled) or the gate and up rows of 2 features (SwiGlu).
constexpr int kWeightRowsPerWarp = 4;
constexpr int kFeaturesPerWarp = kWeightRowsPerWarp / 2;
constexpr int kWeightRowsPerBlock = kWarpsPerBlock * kWeightRowsPerWarp;
// SwiGLU weights interleave gate and up rows in blocks of this many (see Epilogue::SwiGlu).
constexpr int kSwiGluBlock = 8;
constexpr unsigned kFullWarp = 0xffffffffu;

static_assert(kSwiGluBlock % kFeaturesPerWarp == 0, "a warp's features share one gate/up interleave block");
static_assert(kGemvMaxRows <= kWarpSize, "the epilogue gives each row to one lane");

__device__ __forceinline__ int gateRowOf(int feature) {
  return (feature / kSwiGluBlock) * (2 * kSwiGluBlock) + feature % kSwiGluBlock;
}

// Epilogue of one plan row: the warp's 4 sums become 2 SwiGLU features (activation dtype) or 4 scaled columns (f32).
template <typename T, Epilogue kEpilogue>
__device__ __forceinline__ void writeRowOutputs(const GroupedGemm& gemm, int row, int firstOutputColumn,
                                                int validWeightRows, const float (&rowSum)[kWeightRowsPerWarp]) {
  if constexpr (kEpilogue == Epilogue::SwiGlu) {
    T* outputRow = static_cast<T*>(gemm.output) + static_cast<size_t>(row) * gemm.outputStride;
#pragma unroll
    for (int f = 0; f < kFeaturesPerWarp; ++f) {
      const float value = silu(rowSum[f]) * rowSum[kFeaturesPerWarp + f];
      outputRow[firstOutputColumn + f] = ElementOps<T>::fromFloat(value);
    }
  } else {
    float* outputRow = static_cast<float*>(gemm.output) + static_cast<size_t>(row) * gemm.outputStride;
    const float scale = gemm.rowScale != nullptr ? gemm.rowScale[row] : 1.0f;
#pragma unroll
    for (int j = 0; j < kWeightRowsPerWarp; ++j) {
      if (j < validWeightRows) outputRow[firstOutputColumn + j] = rowSum[j] * scale;
    }
  }
}


// Which weight rows a warp streams (4: 2 SwiGLU features' gate and up rows, or 4 output columns), the first output
// column they give, and how many are real (0 for a warp past the last column, which still reaches every barrier).
template <Epilogue kEpilogue>
__device__ __forceinline__ void warpWeightRows(const GroupedGemm& gemm, int warpIndex, int (&weightRow)[kWeightRowsPerWarp],
                                               int* validWeightRows, int* firstOutputColumn) {
  if constexpr (kEpilogue == Epilogue::SwiGlu) {
    *firstOutputColumn = warpIndex * kFeaturesPerWarp;  // a feature
    *validWeightRows = *firstOutputColumn < gemm.n / 2 ? kWeightRowsPerWarp : 0;
    for (int f = 0; f < kFeaturesPerWarp; ++f) {
      weightRow[f] = gateRowOf(*firstOutputColumn + f);
      weightRow[kFeaturesPerWarp + f] = weightRow[f] + kSwiGluBlock;  // its up row
    }
  } else {
    *firstOutputColumn = warpIndex * kWeightRowsPerWarp;
    *validWeightRows = max(0, min(kWeightRowsPerWarp, gemm.n - *firstOutputColumn));
    for (int j = 0; j < kWeightRowsPerWarp; ++j) weightRow[j] = *firstOutputColumn + j;
  }
}

// Plan rows [*rowBegin, *rowEnd) of this block's group (blockIdx.y); false when it has none (the block returns
// before touching its weights). Counts the group's rows once, in block x == 0.
__device__ __forceinline__ bool groupRows(const GroupedGemm& gemm, int* rowBegin, int* rowEnd) {
  const int group = blockIdx.y;
  *rowBegin = 0;
  *rowEnd = gemm.rows;
  if (gemm.groupOffsets != nullptr) {
    *rowBegin = gemm.groupOffsets[group];
    *rowEnd = gemm.groupOffsets[group + 1];
  } else if (group != 0) {
    return false;  // without offsets there is one group
  }
  if (*rowBegin >= *rowEnd) return false;
  if (blockIdx.x == 0 && threadIdx.x == 0 && gemm.rowsComputed != nullptr) {
    atomicAdd(&gemm.rowsComputed[group], *rowEnd - *rowBegin);
  }
  return true;
}

// Publishes the input rows of plan rows [chunkBegin, chunkBegin + chunkRows) in rowInput, between two barriers
// (every warp is done with the previous chunk's pointers first). Every thread of the block calls it.
template <typename T>
__device__ __forceinline__ void publishChunkRows(const GroupedGemm& gemm, int chunkBegin, int chunkRows,
                                                 const T* (&rowInput)[kGemvMaxRows]) {
  __syncthreads();
  if (threadIdx.x < chunkRows) {
    const int row = chunkBegin + threadIdx.x;
    const int inputRow = gemm.rowToken != nullptr ? gemm.rowToken[row] : row;
    rowInput[threadIdx.x] = static_cast<const T*>(gemm.input) + static_cast<size_t>(inputRow) * gemm.inputStride;
  }
  __syncthreads();
}

__device__ __forceinline__ void zero(float (&acc)[kWeightRowsPerWarp][kGemvMaxRows]) {
#pragma unroll
  for (int j = 0; j < kWeightRowsPerWarp; ++j) {
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; ++r) acc[j][r] = 0.0f;
  }
}

// Butterfly sums of acc[j][r] over the warp (a fixed order: every lane ends with the same bits); lane r keeps row
// r's sums in rowSum.
__device__ __forceinline__ void reduceRows(const float (&acc)[kWeightRowsPerWarp][kGemvMaxRows], int chunkRows,
                                           int lane, float (&rowSum)[kWeightRowsPerWarp]) {
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
    if (r >= chunkRows) break;
#pragma unroll
    for (int j = 0; j < kWeightRowsPerWarp; ++j) {
      float sum = acc[j][r];
#pragma unroll
      for (int offset = kWarpSize / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFullWarp, sum, offset);
      if (lane == r) rowSum[j] = sum;
    }
  }
}

}  // namespace dynamoe::cuda::gemv
