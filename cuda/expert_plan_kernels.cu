// The plan on the GPU: a counting sort of the used routing slots by expert (rows of an expert in token order, so
// the result is the same every run), expert offsets, and the tile table the grouped GEMMs walk. Built from the
// route kernel's per-chunk expert counts, without host synchronisation.
#include <cub/block/block_scan.cuh>

#include "cuda_check.h"
#include "moe_kernels.h"

namespace dynamoe::cuda {

namespace {

constexpr int kScanThreads = 1024;
constexpr int kScatterThreads = 256;

using BlockScan = cub::BlockScan<int32_t, kScanThreads>;

__device__ __forceinline__ int countStride(const PlanLaunch& plan) {
  return plan.countStride > 0 ? plan.countStride : plan.experts;
}

// One block: expert offsets and tile offsets (exclusive scans over experts), each chunk's first row per expert,
// and the tile table.
__global__ void __launch_bounds__(kScanThreads) planScanKernel(PlanLaunch plan, int chunks) {
  __shared__ typename BlockScan::TempStorage scanStorage;
  __shared__ int32_t carry[2];  // rows and tiles before this pass's experts
  if (threadIdx.x == 0) carry[0] = carry[1] = 0;
  for (int base = 0; base < plan.experts; base += kScanThreads) {
    const int e = base + static_cast<int>(threadIdx.x);
    const int32_t load = e < plan.experts ? plan.expertLoad[e] : 0;
    const int32_t tiles = (load + plan.tileRows - 1) / plan.tileRows;
    int32_t rowOffset;
    int32_t tileOffset;
    int32_t rowTotal;
    int32_t tileTotal;
    __syncthreads();  // carry is written below by thread 0 after every thread has read it
    BlockScan(scanStorage).ExclusiveSum(load, rowOffset, rowTotal);
    __syncthreads();  // scanStorage is reused
    BlockScan(scanStorage).ExclusiveSum(tiles, tileOffset, tileTotal);
    rowOffset += carry[0];
    tileOffset += carry[1];
    if (e < plan.experts) {
      plan.out.expertOffsets[e] = rowOffset;
      int32_t running = rowOffset;
#pragma unroll 8
      for (int c = 0; c < chunks; ++c) {
        const size_t at = static_cast<size_t>(c) * countStride(plan) + e;
        plan.chunkBase[at] = running;
        running += plan.chunkCounts[at];
      }
      for (int32_t i = 0; i < tiles; ++i) {
        plan.tileExpert[tileOffset + i] = e;
        plan.tileRowStart[tileOffset + i] = rowOffset + i * plan.tileRows;
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      carry[0] += rowTotal;
      carry[1] += tileTotal;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    plan.out.expertOffsets[plan.experts] = carry[0];
    *plan.tileCount = carry[1];
  }
}

// A block per chunk of tokens; a thread per expert walks the chunk's tokens in order and hands out that expert's
// rows, so rows are in token order within each expert.
__global__ void __launch_bounds__(kScatterThreads) planScatterKernel(PlanLaunch plan) {
  const int chunk = blockIdx.x;
  const int firstToken = chunk * kTokensPerChunk;
  const int lastToken = min(plan.tokens, firstToken + kTokensPerChunk);
  const size_t chunkAt = static_cast<size_t>(chunk) * countStride(plan);
  for (int e = threadIdx.x; e < plan.experts; e += blockDim.x) {
    int32_t remaining = plan.chunkCounts[chunkAt + e];
    int32_t row = plan.chunkBase[chunkAt + e];
    for (int t = firstToken; t < lastToken && remaining > 0; ++t) {
      const size_t slots = static_cast<size_t>(t) * plan.kMax;
      const int used = plan.counts[t];
      for (int s = 0; s < used; ++s) {
        if (plan.ids[slots + s] != e) continue;
        plan.out.slotRow[slots + s] = row;
        plan.out.rowToken[row] = t;
        plan.out.rowWeight[row] = plan.weights[slots + s];
        ++row;
        --remaining;
        break;  // an expert appears at most once per token
      }
    }
  }
  // Unused slots, and those of zero-computation experts (no GEMM row), point at no row. Disjoint from the slots
  // the loop above writes, so the order of the two does not matter.
  for (int i = threadIdx.x; i < (lastToken - firstToken) * plan.kMax; i += blockDim.x) {
    const int t = firstToken + i / plan.kMax;
    const int s = i % plan.kMax;
    const size_t slot = static_cast<size_t>(t) * plan.kMax + s;
    if (s >= plan.counts[t] || plan.ids[slot] >= plan.experts) plan.out.slotRow[slot] = -1;
  }
}

}  // namespace

void launchPlan(const PlanLaunch& plan, cudaStream_t stream) {
  if (plan.tokens == 0) return;
  const int chunks = chunkCount(plan.tokens);
  planScanKernel<<<1, kScanThreads, 0, stream>>>(plan, chunks);
  checkCuda(cudaGetLastError(), "the plan scan kernel launch");
  planScatterKernel<<<chunks, kScatterThreads, 0, stream>>>(plan);
  checkCuda(cudaGetLastError(), "the plan scatter kernel launch");
}

}  // namespace dynamoe::cuda
