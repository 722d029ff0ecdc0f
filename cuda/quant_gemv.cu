// Decode path of the grouped GEMMs on quantized weights (GGUF blocks, any type dynamoe reads): the expert GEMV's
// layout (a warp streams 4 weight rows once and multiplies them with all of its group's <= 16 rows), with each
// weight group of 16 values dequantized to fp32 in registers by the core's decoder (quant_groups.h), so the bytes
// read are the file's. Activations are bf16; accumulation is fp32.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "../native/core/quant_groups.h"
#include "cuda_check.h"
#include "element_types.cuh"
#include "gemv_common.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

using namespace gemv;

constexpr int kGroup = kQuantGroupElements;

template <typename T, QuantType kType, Epilogue kEpilogue>
__global__ void __launch_bounds__(kThreads) quantGemvKernel(GroupedGemm gemm) {
  static_assert(sizeof(T) == 2, "quantized weights take 16-bit activations");
  constexpr int kVectorElements = kElementsPerVector<T>;  // 8: a group's activations are two 16-byte vectors
  __shared__ const T* rowInput[kGemvMaxRows];

  int rowBegin, rowEnd;
  if (!groupRows(gemm, &rowBegin, &rowEnd)) return;  // an unused expert costs no weight traffic (uniform)
  const int group = blockIdx.y;

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int warpIndex = blockIdx.x * kWarpsPerBlock + warp;
  constexpr QuantType type = kType;  // a constant: the decoder's switch folds to this type's arithmetic
  const QuantTraits traits = quantTraits(type);
  const int groupsPerBlock = traits.blockElements / kGroup;
  const uint8_t* groupWeights = static_cast<const uint8_t*>(gemm.weights) + static_cast<size_t>(group) * gemm.groupStride;

  int weightRow[kWeightRowsPerWarp];
  int validWeightRows, firstOutputColumn;
  warpWeightRows<kEpilogue>(gemm, warpIndex, weightRow, &validWeightRows, &firstOutputColumn);
  const uint8_t* weightRows[kWeightRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kWeightRowsPerWarp; ++j) {
    const int row = j < validWeightRows ? weightRow[j] : 0;
    weightRows[j] = groupWeights + static_cast<size_t>(row) * gemm.weightRowBytes;
  }
  const int groupsPerRow = gemm.k / kGroup;

  for (int chunkBegin = rowBegin; chunkBegin < rowEnd; chunkBegin += kGemvMaxRows) {
    const int chunkRows = min(kGemvMaxRows, rowEnd - chunkBegin);
    publishChunkRows(gemm, chunkBegin, chunkRows, rowInput);
    if (validWeightRows == 0) continue;

    float acc[kWeightRowsPerWarp][kGemvMaxRows];
    zero(acc);

    // Lane l takes groups l, l + 32, ...: a warp reads 32 consecutive groups (16 Q8_0 blocks, 4 Q4_K blocks) of a
    // weight row, each once. One weight row's group is decoded at a time (16 registers, not 64), and the group's
    // activations are read again for each row from L1.
    for (int g = lane; g < groupsPerRow; g += kWarpSize) {
      const int block = g / groupsPerBlock;
      const int inBlock = g - block * groupsPerBlock;
#pragma unroll
      for (int j = 0; j < kWeightRowsPerWarp; ++j) {
        if (j >= validWeightRows) break;  // uniform over the warp
        float weight[kGroup];
        dequantizeGroup16(type, weightRows[j] + static_cast<size_t>(block) * traits.blockBytes, inBlock, weight);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; ++r) {
          if (r >= chunkRows) break;  // uniform over the warp
          const uint4* vectors = reinterpret_cast<const uint4*>(rowInput[r] + static_cast<size_t>(g) * kGroup);
#pragma unroll
          for (int half = 0; half < kGroup / kVectorElements; ++half) {
            float activation[kVectorElements];
            widenVector<T>(__ldg(vectors + half), activation);
#pragma unroll
            for (int e = 0; e < kVectorElements; ++e) {
              acc[j][r] = fmaf(weight[half * kVectorElements + e], activation[e], acc[j][r]);
            }
          }
        }
      }
    }

    float rowSum[kWeightRowsPerWarp] = {};
    reduceRows(acc, chunkRows, lane, rowSum);
    if (lane < chunkRows) writeRowOutputs<T, kEpilogue>(gemm, chunkBegin + lane, firstOutputColumn, validWeightRows,
                                                        rowSum);
  }
}

template <typename T, QuantType kType>
void launchForType(const GroupedGemm& gemm, int groups, Epilogue epilogue, cudaStream_t stream) {
  const dim3 grid((gemm.n + kWeightRowsPerBlock - 1) / kWeightRowsPerBlock, groups);
  if (epilogue == Epilogue::SwiGlu) {
    quantGemvKernel<T, kType, Epilogue::SwiGlu><<<grid, kThreads, 0, stream>>>(gemm);
  } else {
    quantGemvKernel<T, kType, Epilogue::Scaled><<<grid, kThreads, 0, stream>>>(gemm);
  }
  checkCuda(cudaGetLastError(), "launching the quantized GEMV");
}

template <typename T>
void launchForElement(const GroupedGemm& gemm, int groups, Epilogue epilogue, cudaStream_t stream) {
  const bool known = visitQuantType(gemm.quant, [&](auto type) {
    launchForType<T, decltype(type)::value>(gemm, groups, epilogue, stream);
  });
  if (!known) throw Error(code::kInternal, "quantized GEMV: no quantized type");
}

}  // namespace

void launchQuantGemv(const GroupedGemm& gemm, int groups, Epilogue epilogue, cudaStream_t stream) {
  // Shape rules of this kernel; breaking one is a bug in the caller, not in the user's input.
  if (gemm.quant == QuantType::None || gemm.n <= 0 || gemm.k <= 0 || groups <= 0 || groups > 65535) {
    throw Error(code::kInternal, "quantized GEMV needs a quantized type, n > 0, k > 0 and 1..65535 groups");
  }
  if (gemm.k % quantTraits(gemm.quant).blockElements != 0 || gemm.weightRowBytes != quantRowBytes(gemm.quant, gemm.k)) {
    throw Error(code::kInternal, std::string("quantized GEMV: k must be whole ") + quantTraits(gemm.quant).name +
                                     " blocks of weightRowBytes bytes a row");
  }
  if (gemm.inputStride % kGroup != 0 || reinterpret_cast<uintptr_t>(gemm.input) % 16 != 0) {
    throw Error(code::kInternal, "quantized GEMV loads 16-byte activation vectors: inputStride must be a multiple of 16");
  }
  if (epilogue == Epilogue::SwiGlu && gemm.n % (2 * kSwiGluBlock) != 0) {
    throw Error(code::kInternal, "quantized GEMV with SwiGLU needs n % 16 == 0");
  }
  // Every quantized layer converts its activations to bf16 (the tensor-core path's type): one kernel set.
  if (gemm.dtype != DType::BF16) throw Error(code::kInternal, "quantized GEMV: activations must be bf16");
  launchForElement<__nv_bfloat16>(gemm, groups, epilogue, stream);
}

}  // namespace dynamoe::cuda
