// Decode path of the grouped GEMMs: every group (expert) has at most kGemvMaxRows rows, so the time is the weight
// traffic. Each block streams a slice of one group's weight rows exactly once and multiplies every loaded vector
// with all of the group's rows; groups without rows return before touching their weights.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda_check.h"
#include "element_types.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

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

template <typename T, Epilogue kEpilogue>
__global__ void __launch_bounds__(kThreads) expertGemvKernel(GroupedGemm gemm) {
  constexpr int kVectorElements = kElementsPerVector<T>;
  __shared__ const T* rowInput[kGemvMaxRows];

  const int group = blockIdx.y;
  int rowBegin = 0;
  int rowEnd = gemm.rows;
  if (gemm.groupOffsets != nullptr) {
    rowBegin = gemm.groupOffsets[group];
    rowEnd = gemm.groupOffsets[group + 1];
  } else if (group != 0) {
    return;  // without offsets there is one group
  }
  if (rowBegin >= rowEnd) return;  // an unused expert costs no weight traffic (uniform: no barrier is skipped)
  if (blockIdx.x == 0 && threadIdx.x == 0 && gemm.rowsComputed != nullptr) {
    atomicAdd(&gemm.rowsComputed[group], rowEnd - rowBegin);
  }

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int warpIndex = blockIdx.x * kWarpsPerBlock + warp;
  const int k = gemm.k;
  const T* groupWeights = static_cast<const T*>(gemm.weights) + static_cast<size_t>(group) * gemm.groupStride;

  // Which weight rows this warp streams; warps past the last column still reach every barrier.
  int weightRow[kWeightRowsPerWarp];
  int validWeightRows;
  int firstOutputColumn;
  if constexpr (kEpilogue == Epilogue::SwiGlu) {
    firstOutputColumn = warpIndex * kFeaturesPerWarp;  // a feature
    validWeightRows = firstOutputColumn < gemm.n / 2 ? kWeightRowsPerWarp : 0;
    for (int f = 0; f < kFeaturesPerWarp; ++f) {
      weightRow[f] = gateRowOf(firstOutputColumn + f);
      weightRow[kFeaturesPerWarp + f] = weightRow[f] + kSwiGluBlock;  // its up row
    }
  } else {
    firstOutputColumn = warpIndex * kWeightRowsPerWarp;
    validWeightRows = max(0, min(kWeightRowsPerWarp, gemm.n - firstOutputColumn));
    for (int j = 0; j < kWeightRowsPerWarp; ++j) weightRow[j] = firstOutputColumn + j;
  }
  const uint4* weightVectors[kWeightRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kWeightRowsPerWarp; ++j) {
    const int row = j < validWeightRows ? weightRow[j] : 0;
    weightVectors[j] = reinterpret_cast<const uint4*>(groupWeights + static_cast<size_t>(row) * k);
  }
  const int vectorsPerRow = k / kVectorElements;

  // The contract keeps groups within kGemvMaxRows rows; more would be taken in chunks (weights read per chunk).
  for (int chunkBegin = rowBegin; chunkBegin < rowEnd; chunkBegin += kGemvMaxRows) {
    const int chunkRows = min(kGemvMaxRows, rowEnd - chunkBegin);
    __syncthreads();  // every warp is done with the previous chunk's row pointers
    if (threadIdx.x < chunkRows) {
      const int row = chunkBegin + threadIdx.x;
      const int inputRow = gemm.rowToken != nullptr ? gemm.rowToken[row] : row;
      rowInput[threadIdx.x] = static_cast<const T*>(gemm.input) + static_cast<size_t>(inputRow) * gemm.inputStride;
    }
    __syncthreads();
    if (validWeightRows == 0) continue;

    float acc[kWeightRowsPerWarp][kGemvMaxRows];
#pragma unroll
    for (int j = 0; j < kWeightRowsPerWarp; ++j) {
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) acc[j][r] = 0.0f;
    }

    // Lane l takes vectors l, l + 32, ...: a warp's load covers 512 contiguous bytes of a weight row.
    for (int v = lane; v < vectorsPerRow; v += kWarpSize) {
      float weight[kWeightRowsPerWarp][kVectorElements];
#pragma unroll
      for (int j = 0; j < kWeightRowsPerWarp; ++j) {
        // Weights are read once per forward: stream them past the caches the activations live in.
        const uint4 raw = j < validWeightRows ? __ldcs(weightVectors[j] + v) : make_uint4(0, 0, 0, 0);
        widenVector<T>(raw, weight[j]);
      }
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r >= chunkRows) break;  // uniform over the warp
        float activation[kVectorElements];
        widenVector<T>(__ldg(reinterpret_cast<const uint4*>(rowInput[r]) + v), activation);
#pragma unroll
        for (int j = 0; j < kWeightRowsPerWarp; ++j) {
#pragma unroll
          for (int e = 0; e < kVectorElements; ++e) acc[j][r] = fmaf(weight[j][e], activation[e], acc[j][r]);
        }
      }
    }

    // Butterfly sums: a fixed order, and every lane ends with the same bits. Lane r then keeps row r's sums.
    float rowSum[kWeightRowsPerWarp] = {};
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
    if (lane < chunkRows) writeRowOutputs<T, kEpilogue>(gemm, chunkBegin + lane, firstOutputColumn, validWeightRows,
                                                        rowSum);
  }
}

template <typename T>
void launchForElement(const GroupedGemm& gemm, int groups, Epilogue epilogue, cudaStream_t stream) {
  constexpr int kVectorElements = kElementsPerVector<T>;
  if (gemm.k % kVectorElements != 0 || gemm.inputStride % kVectorElements != 0 ||
      gemm.groupStride % kVectorElements != 0) {
    throw Error(code::kInternal, "expert GEMV loads 16-byte vectors: k, inputStride and groupStride must be multiples "
                                 "of " + std::to_string(kVectorElements));
  }
  const dim3 grid((gemm.n + kWeightRowsPerBlock - 1) / kWeightRowsPerBlock, groups);
  if (epilogue == Epilogue::SwiGlu) {
    expertGemvKernel<T, Epilogue::SwiGlu><<<grid, kThreads, 0, stream>>>(gemm);
  } else {
    expertGemvKernel<T, Epilogue::Scaled><<<grid, kThreads, 0, stream>>>(gemm);
  }
  checkCuda(cudaGetLastError(), "launching the expert GEMV");
}

}  // namespace

void launchExpertGemv(const GroupedGemm& gemm, int groups, Epilogue epilogue, cudaStream_t stream) {
  // Shape rules of this kernel; breaking one is a bug in the caller, not in the user's input.
  if (gemm.n <= 0 || gemm.k <= 0 || groups <= 0 || groups > 65535) {
    throw Error(code::kInternal, "expert GEMV needs n > 0, k > 0 and 1..65535 groups");
  }
  if (epilogue == Epilogue::SwiGlu && gemm.n % (2 * kSwiGluBlock) != 0) {
    throw Error(code::kInternal, "expert GEMV with SwiGLU needs n % 16 == 0");
  }
  switch (gemm.dtype) {
    case DType::F32: launchForElement<float>(gemm, groups, epilogue, stream); break;
    case DType::F16: launchForElement<__half>(gemm, groups, epilogue, stream); break;
    case DType::BF16: launchForElement<__nv_bfloat16>(gemm, groups, epilogue, stream); break;
  }
}

}  // namespace dynamoe::cuda
