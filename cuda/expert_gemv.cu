// Decode path of the grouped GEMMs: every group (expert) has at most kGemvMaxRows rows, so the time is the weight
// traffic. Each block streams a slice of one group's weight rows exactly once and multiplies every loaded vector
// with all of the group's rows; groups without rows return before touching their weights.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda_check.h"
#include "element_types.cuh"
#include "gemv_common.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

using namespace gemv;

template <typename T, Epilogue kEpilogue>
__global__ void __launch_bounds__(kThreads) expertGemvKernel(GroupedGemm gemm) {
  constexpr int kVectorElements = kElementsPerVector<T>;
  __shared__ const T* rowInput[kGemvMaxRows];

  int rowBegin, rowEnd;
  if (!groupRows(gemm, &rowBegin, &rowEnd)) return;  // an unused expert costs no weight traffic (uniform)
  const int group = blockIdx.y;

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int warpIndex = blockIdx.x * kWarpsPerBlock + warp;
  const int k = gemm.k;
  const T* groupWeights = static_cast<const T*>(gemm.weights) + static_cast<size_t>(group) * gemm.groupStride;

  int weightRow[kWeightRowsPerWarp];
  int validWeightRows, firstOutputColumn;
  warpWeightRows<kEpilogue>(gemm, warpIndex, weightRow, &validWeightRows, &firstOutputColumn);
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
    publishChunkRows(gemm, chunkBegin, chunkRows, rowInput);
    if (validWeightRows == 0) continue;

    float acc[kWeightRowsPerWarp][kGemvMaxRows];
    zero(acc);

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
    reduceRows(acc, chunkRows, lane, rowSum);
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
  if (gemm.quant != QuantType::None) {
    launchQuantGemv(gemm, groups, epilogue, stream);
    return;
  }
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
