// Finalize of the MoE block: each token's output is the sum of its routed rows in slot order, plus the (gated)
// shared expert. A block per token and fixed summation orders: the same bits on every run, no atomics.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;
constexpr unsigned kFullWarp = 0xffffffffu;

// Sum over the block in a fixed order (butterfly in each warp, then the warp sums in warp order); every thread
// gets the result. Called once per block, so warpSums needs no barrier before it is written.
__device__ float blockSum(float value, float (&warpSums)[kWarps]) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullWarp, value, offset);
  if (threadIdx.x % kWarpSize == 0) warpSums[threadIdx.x / kWarpSize] = value;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += warpSums[w];
  return total;
}

__global__ void __launch_bounds__(kThreads) finalizeKernel(FinalizeLaunch launch) {
  __shared__ float warpSums[kWarps];
  const int token = blockIdx.x;
  const size_t paddedRow = static_cast<size_t>(token) * launch.paddedHidden;

  float sharedGate = 1.0f;
  if (launch.sharedGateWeight != nullptr) {
    // Strided partial sums: each thread adds its columns in increasing order, then the fixed block reduction.
    const float* xRow = launch.xF32 + paddedRow;
    float partial = 0.0f;
    for (int h = threadIdx.x; h < launch.paddedHidden; h += kThreads) {
      partial = fmaf(launch.sharedGateWeight[h], xRow[h], partial);
    }
    sharedGate = sharedExpertGate(blockSum(partial, warpSums));
  }

  // The router writes at most kMax slots; the clamp only guards against a corrupt count.
  const int slots = min(launch.counts[token], launch.kMax);
  const int32_t* tokenSlotRows = launch.slotRow + static_cast<size_t>(token) * launch.kMax;
  const float* sharedRow = launch.sharedOutput != nullptr ? launch.sharedOutput + paddedRow : nullptr;
  float* outRow = launch.out + static_cast<size_t>(token) * (launch.outStride > 0 ? launch.outStride : launch.hidden);
  for (int h = threadIdx.x; h < launch.hidden; h += kThreads) {
    float acc = 0.0f;
    for (int s = 0; s < slots; ++s) {
      const int row = tokenSlotRows[s];
      if (row >= 0) {
        acc += launch.rowOutput[static_cast<size_t>(row) * launch.paddedHidden + h];
      } else if (launch.identityExperts && launch.ids != nullptr) {
        // An identity zero-computation expert adds weight x input, two roundings as the CPU's combine.
        const size_t slot = static_cast<size_t>(token) * launch.kMax + s;
        if (launch.ids[slot] >= launch.experts) {
          acc = __fadd_rn(acc, __fmul_rn(launch.slotWeights[slot], launch.xF32[paddedRow + h]));
        }
      }
    }
    if (sharedRow != nullptr) acc += sharedGate * sharedRow[h];
    outRow[h] = acc;
  }
}

}  // namespace

void launchFinalize(const FinalizeLaunch& launch, cudaStream_t stream) {
  if (launch.hidden <= 0 || launch.paddedHidden < launch.hidden || launch.kMax <= 0) {
    throw Error(code::kInternal, "finalize needs 0 < hidden <= paddedHidden and kMax > 0");
  }
  if (launch.sharedGateWeight != nullptr && launch.xF32 == nullptr) {
    throw Error(code::kInternal, "finalize with a shared-expert gate needs xF32");
  }
  if (launch.tokens <= 0) return;  // a zero-sized grid is a launch error
  finalizeKernel<<<launch.tokens, kThreads, 0, stream>>>(launch);
  checkCuda(cudaGetLastError(), "launching the finalize kernel");
}

}  // namespace dynamoe::cuda
