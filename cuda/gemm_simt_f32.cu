// Grouped GEMM for f32 weights and activations on CUDA cores (tensor cores take no f32 input), also used for the
// router logits (n = expert count). Persistent blocks walk the plan's tile table; each work item is one
// 64-row x 64-column output tile of one group, with the group's rows gathered from the input while staging.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "cuda_check.h"
#include "element_types.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

constexpr int kTileRows = kSimtTileRows;
constexpr int kTileColumns = 64;
constexpr int kTileDepth = 16;  // k per shared-memory stage
constexpr int kThreads = 256;
constexpr int kThreadRows = 4;     // outputs per thread: 4 rows x 4 columns
constexpr int kThreadColumns = 4;
constexpr int kThreadGridColumns = kTileColumns / kThreadColumns;  // 16 threads across, 16 down
// A staged row is 16 floats + 4 of padding: 8 consecutive rows then start in 8 different 4-bank groups, so the
// 16-byte shared stores and loads of a quarter warp never conflict.
constexpr int kStageStride = kTileDepth + 4;
// SwiGLU weights interleave gate and up rows in blocks of this many (see Epilogue::SwiGlu).
constexpr int kSwiGluBlock = 8;
constexpr int kTileFeatures = kTileColumns / 2;  // SwiGLU outputs per column tile

static_assert(kTileRows == kThreadRows * (kThreads / kThreadGridColumns), "the thread grid covers the tile rows");
static_assert(kTileRows * kTileDepth == kThreads * 4 && kTileColumns * kTileDepth == kThreads * 4,
              "each thread stages one float4 of A and one of B per stage");
static_assert(kThreadColumns == 4 && kTileColumns % (2 * kSwiGluBlock) == 0, "column mapping below assumes these");

// Staged weight rows are kept in feature order: position p < 32 holds the gate row of tile feature p, position
// 32 + p its up row. A thread owning positions c, c + 16, c + 32, c + 48 then holds the gate and up accumulators
// of features c and c + 16, and the 16 threads across read 16 consecutive positions (conflict-free).
__device__ __forceinline__ int stagedPosition(int tileColumn) {
  const int interleaveBlock = tileColumn / (2 * kSwiGluBlock);
  const int within = tileColumn % (2 * kSwiGluBlock);
  return (within / kSwiGluBlock) * kTileFeatures + interleaveBlock * kSwiGluBlock + within % kSwiGluBlock;
}

__device__ __forceinline__ int tileColumnAt(int position) {
  const int feature = position % kTileFeatures;
  return (feature / kSwiGluBlock) * (2 * kSwiGluBlock) + (position / kTileFeatures) * kSwiGluBlock +
         feature % kSwiGluBlock;
}

struct TileExtent {
  int group;
  int rowBegin;
  int rowEnd;  // exclusive; rows past the group's end are neither read nor written
};

__device__ __forceinline__ TileExtent tileExtent(const GroupedGemm& gemm, int tile) {
  const int group = gemm.tileGroup != nullptr ? gemm.tileGroup[tile] : 0;
  const int rowBegin = gemm.tileGroup != nullptr ? gemm.tileRowStart[tile] : tile * kTileRows;
  const int groupEnd = gemm.groupOffsets != nullptr ? gemm.groupOffsets[group + 1] : gemm.rows;
  return {group, rowBegin, min(rowBegin + kTileRows, groupEnd)};
}

using StageA = float[kTileRows][kStageStride];
using StageB = float[kTileColumns][kStageStride];

template <Epilogue kEpilogue>
__global__ void __launch_bounds__(kThreads) gemmSimtF32Kernel(GroupedGemm gemm) {
  __shared__ __align__(16) StageA stagedA[2];
  __shared__ __align__(16) StageB stagedB[2];

  const float* input = static_cast<const float*>(gemm.input);
  const float* weights = static_cast<const float*>(gemm.weights);
  const int n = gemm.n;
  const int k = gemm.k;
  const int columnTiles = (n + kTileColumns - 1) / kTileColumns;
  const int tileCount = gemm.tileGroup != nullptr ? *gemm.tileCount : (gemm.rows + kTileRows - 1) / kTileRows;
  const int workItems = tileCount * columnTiles;

  // Staging: 8 consecutive threads take 8 different rows (conflict-free stores); a warp reads 8 rows x 64 bytes.
  const int stageRow = (threadIdx.x & 7) + 8 * (threadIdx.x >> 5);
  const int stageQuad = (threadIdx.x >> 3) & 3;  // which float4 of the stage's 16 k values
  const int stageBPosition = stagedPosition(stageRow);
  // Compute: rows threadRow * 4 + i, staged columns threadColumn + 16 * j.
  const int threadRow = threadIdx.x / kThreadGridColumns;
  const int threadColumn = threadIdx.x % kThreadGridColumns;

  // Columns vary fastest so the blocks running at once share one group's A rows and stream its weights once.
  for (int item = blockIdx.x; item < workItems; item += gridDim.x) {
    const int tile = item / columnTiles;
    const int columnTile = item % columnTiles;
    const TileExtent extent = tileExtent(gemm, tile);
    if (extent.rowBegin >= extent.rowEnd) continue;  // uniform over the block: no barrier is skipped by some only

    const int aRow = extent.rowBegin + stageRow;
    const bool aValid = aRow < extent.rowEnd;
    const int aInputRow = !aValid ? 0 : gemm.rowToken != nullptr ? gemm.rowToken[aRow] : aRow;
    const float* aSource = input + static_cast<size_t>(aInputRow) * gemm.inputStride + stageQuad * 4;
    const int bColumn = columnTile * kTileColumns + stageRow;
    const bool bValid = bColumn < n;
    const float* bSource = weights + static_cast<size_t>(extent.group) * gemm.groupStride +
                           static_cast<size_t>(bValid ? bColumn : 0) * k + stageQuad * 4;

    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 nextA = aValid ? __ldg(reinterpret_cast<const float4*>(aSource)) : zero;
    float4 nextB = bValid ? __ldg(reinterpret_cast<const float4*>(bSource)) : zero;
    // The previous item ended with a barrier, so no thread still reads stage 0.
    *reinterpret_cast<float4*>(&stagedA[0][stageRow][stageQuad * 4]) = nextA;
    *reinterpret_cast<float4*>(&stagedB[0][stageBPosition][stageQuad * 4]) = nextB;
    __syncthreads();

    float acc[kThreadRows][kThreadColumns] = {};
    int stage = 0;
    for (int k0 = 0; k0 < k; k0 += kTileDepth) {
      const bool more = k0 + kTileDepth < k;
      // Next stage's loads are issued before this stage's math so their latency hides behind it.
      if (more) {
        nextA = aValid ? __ldg(reinterpret_cast<const float4*>(aSource + k0 + kTileDepth)) : zero;
        nextB = bValid ? __ldg(reinterpret_cast<const float4*>(bSource + k0 + kTileDepth)) : zero;
      }
#pragma unroll
      for (int kk = 0; kk < kTileDepth; kk += 4) {
        float4 a[kThreadRows];
        float4 b[kThreadColumns];
#pragma unroll
        for (int i = 0; i < kThreadRows; ++i) {
          a[i] = *reinterpret_cast<const float4*>(&stagedA[stage][threadRow * kThreadRows + i][kk]);
        }
#pragma unroll
        for (int j = 0; j < kThreadColumns; ++j) {
          b[j] = *reinterpret_cast<const float4*>(&stagedB[stage][threadColumn + kThreadGridColumns * j][kk]);
        }
        // Fixed order over k for every output: the same bits on every run.
#pragma unroll
        for (int i = 0; i < kThreadRows; ++i) {
#pragma unroll
          for (int j = 0; j < kThreadColumns; ++j) {
            acc[i][j] = fmaf(a[i].x, b[j].x, acc[i][j]);
            acc[i][j] = fmaf(a[i].y, b[j].y, acc[i][j]);
            acc[i][j] = fmaf(a[i].z, b[j].z, acc[i][j]);
            acc[i][j] = fmaf(a[i].w, b[j].w, acc[i][j]);
          }
        }
      }
      // Two stages: writing the other one needs no barrier of its own, the one below orders both directions.
      if (more) {
        *reinterpret_cast<float4*>(&stagedA[stage ^ 1][stageRow][stageQuad * 4]) = nextA;
        *reinterpret_cast<float4*>(&stagedB[stage ^ 1][stageBPosition][stageQuad * 4]) = nextB;
      }
      __syncthreads();
      stage ^= 1;
    }

    if (columnTile == 0 && threadIdx.x == 0 && gemm.rowsComputed != nullptr) {
      atomicAdd(&gemm.rowsComputed[extent.group], extent.rowEnd - extent.rowBegin);
    }
    float* output = static_cast<float*>(gemm.output);
#pragma unroll
    for (int i = 0; i < kThreadRows; ++i) {
      const int row = extent.rowBegin + threadRow * kThreadRows + i;
      if (row >= extent.rowEnd) continue;
      float* outputRow = output + static_cast<size_t>(row) * gemm.outputStride;
      if constexpr (kEpilogue == Epilogue::SwiGlu) {
        // Positions j and j + 2 are the gate and up rows of the same feature.
#pragma unroll
        for (int j = 0; j < kThreadColumns / 2; ++j) {
          const int feature = columnTile * kTileFeatures + threadColumn + kThreadGridColumns * j;
          if (feature < n / 2) outputRow[feature] = silu(acc[i][j]) * acc[i][j + kThreadColumns / 2];
        }
      } else {
        const float scale = gemm.rowScale != nullptr ? gemm.rowScale[row] : 1.0f;
#pragma unroll
        for (int j = 0; j < kThreadColumns; ++j) {
          const int column = columnTile * kTileColumns + tileColumnAt(threadColumn + kThreadGridColumns * j);
          if (column < n) outputRow[column] = acc[i][j] * scale;
        }
      }
    }
  }
}

// Blocks of one kernel that fit on a multiprocessor at once: the persistent grid never exceeds one wave.
template <Epilogue kEpilogue>
int residentBlocksPerMultiprocessor() {
  static const int blocks = [] {
    int count = 0;
    checkCuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&count, gemmSimtF32Kernel<kEpilogue>, kThreads, 0),
              "cudaOccupancyMaxActiveBlocksPerMultiprocessor (f32 SIMT GEMM)");
    return std::max(count, 1);
  }();
  return blocks;
}

template <Epilogue kEpilogue>
void launchWithEpilogue(const GroupedGemm& gemm, cudaStream_t stream) {
  const long long columnTiles = (gemm.n + kTileColumns - 1) / kTileColumns;
  const long long tileBound =
      gemm.tileGroup != nullptr ? gemm.maxTiles : (static_cast<long long>(gemm.rows) + kTileRows - 1) / kTileRows;
  long long grid = tileBound * columnTiles;
  if (gemm.multiprocessors > 0) {
    grid = std::min(grid, static_cast<long long>(gemm.multiprocessors) * residentBlocksPerMultiprocessor<kEpilogue>());
  }
  grid = std::min(grid, static_cast<long long>(INT_MAX));
  if (grid <= 0) return;  // no rows: nothing to compute and a zero-sized grid is a launch error
  gemmSimtF32Kernel<kEpilogue><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(gemm);
  checkCuda(cudaGetLastError(), "launching the f32 SIMT grouped GEMM");
}

}  // namespace

void launchGemmSimtF32(const GroupedGemm& gemm, Epilogue epilogue, cudaStream_t stream) {
  // Shape rules of this kernel; breaking one is a bug in the caller, not in the user's input.
  if (gemm.dtype != DType::F32) throw Error(code::kInternal, "f32 SIMT GEMM given non-f32 tensors");
  if (gemm.n <= 0 || gemm.k <= 0 || gemm.k % kTileDepth != 0) {
    throw Error(code::kInternal, "f32 SIMT GEMM needs n > 0 and k a positive multiple of 16");
  }
  if (gemm.inputStride % 4 != 0 || gemm.groupStride % 4 != 0) {
    throw Error(code::kInternal, "f32 SIMT GEMM loads float4s: inputStride and groupStride must be multiples of 4");
  }
  if (gemm.tileGroup != nullptr && gemm.tileRows != kTileRows) {
    throw Error(code::kInternal, "f32 SIMT GEMM given a tile table built for another tile height");
  }
  if (epilogue == Epilogue::SwiGlu && gemm.n % (2 * kSwiGluBlock) != 0) {
    throw Error(code::kInternal, "f32 SIMT GEMM with SwiGLU needs n % 16 == 0");
  }
  if (epilogue == Epilogue::SwiGlu) {
    launchWithEpilogue<Epilogue::SwiGlu>(gemm, stream);
  } else {
    launchWithEpilogue<Epilogue::Scaled>(gemm, stream);
  }
}

}  // namespace dynamoe::cuda
