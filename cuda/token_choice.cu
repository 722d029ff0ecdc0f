#include "token_choice.h"

#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <vector>

#include "block_reduce.cuh"
#include "cuda_check.h"
#include "device_ops.h"
#include "moe_kernels.h"

namespace dynamoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Rows ranked per sort: bounds the sort's scratch (four [rows][stride] arrays) while one launch still sorts many.
constexpr int kSortRows = 16;

size_t chunksOf(size_t count) { return (count + kChoiceChunk - 1) / kChoiceChunk; }

// One block per row: the first index of the largest logit among [0, limit) for greedy rows (a larger value wins,
// equal values go to the lower id, NaN never replaces the best so far: the CPU's loop).
__global__ void __launch_bounds__(kThreads)
    greedyKernel(const float* logits, size_t stride, const TokenChoice* choices, int32_t* tokens) {
  __shared__ float bestValues[kThreads];
  __shared__ int32_t bestIds[kThreads];
  const int row = blockIdx.x;
  const TokenChoice choice = choices[row];
  if (choice.limit <= 0 || choice.temperature != 0.0) return;  // the whole block leaves together
  const float* values = logits + static_cast<size_t>(row) * stride;
  // The CPU keeps id 0 unless a later value is larger, so a NaN at id 0 is kept: start every thread from id 0.
  float best = values[0];
  int32_t bestId = 0;
  for (int v = threadIdx.x; v < choice.limit; v += kThreads) {
    if (values[v] > best) {
      best = values[v];
      bestId = v;
    }
  }
  bestValues[threadIdx.x] = best;
  bestIds[threadIdx.x] = bestId;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) {
      const float otherValue = bestValues[threadIdx.x + half];
      const int32_t otherId = bestIds[threadIdx.x + half];
      const float value = bestValues[threadIdx.x];
      if (otherValue > value || (otherValue == value && otherId < bestIds[threadIdx.x])) {
        bestValues[threadIdx.x] = otherValue;
        bestIds[threadIdx.x] = otherId;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) tokens[row] = bestIds[0];
}

__device__ bool ranksRow(const TokenChoice& choice) {
  return choice.limit > 0 && choice.temperature > 0.0 && choiceRanked(choice);
}

// For the block of rows [firstRow, firstRow + gridDim.x): ranked rows' keys and ids, and every row's sort segment
// (empty for a row that is not ranked).
__global__ void __launch_bounds__(kThreads)
    rankInputKernel(const float* logits, size_t stride, const TokenChoice* choices, int firstRow, float* keys,
                    int32_t* ids, int* segmentBegin, int* segmentEnd) {
  const int local = blockIdx.x;
  const int row = firstRow + local;
  const TokenChoice choice = choices[row];
  const bool ranked = ranksRow(choice);
  const size_t base = static_cast<size_t>(local) * stride;
  if (threadIdx.x == 0) {
    segmentBegin[local] = static_cast<int>(base);
    segmentEnd[local] = static_cast<int>(base) + (ranked ? choice.limit : 0);
  }
  if (!ranked) return;
  const float* values = logits + static_cast<size_t>(row) * stride;
  for (int v = threadIdx.x; v < choice.limit; v += kThreads) {
    keys[base + v] = choiceKey(values[v]);
    ids[base + v] = v;
  }
}

// Chunk sums of a candidate sequence of `count` weights into base[1..chunks] (a thread a chunk, each summed in
// order), then base[0] = 0 and the running prefix by thread 0: token_choice.h's step 4.
template <typename WeightAt>
__device__ void chunkBases(const WeightAt& weightAt, int count, double* base) {
  const int chunks = (count + kChoiceChunk - 1) / kChoiceChunk;
  for (int c = threadIdx.x; c < chunks; c += kThreads) {
    base[c + 1] = choiceChunkSum(weightAt, c * kChoiceChunk, min((c + 1) * kChoiceChunk, count));
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    base[0] = 0.0;
    for (int c = 0; c < chunks; ++c) base[c + 1] = __dadd_rn(base[c], base[c + 1]);
  }
  __syncthreads();
}

// One block per row of [firstRow, firstRow + gridDim.x) that samples: token_choice.h's steps, the chunk sums spread
// over the threads, the sequential scans on thread 0. Ranked rows read their sorted keys and ids at [local][stride].
__global__ void __launch_bounds__(kThreads)
    sampleKernel(const float* logits, size_t stride, const TokenChoice* choices, int firstRow, const float* sortedKeys,
                 const int32_t* sortedIds, double* bases, size_t basesPerRow, int32_t* tokens) {
  __shared__ float maxShared[kWarps];
  const int local = blockIdx.x;
  const int row = firstRow + local;
  const TokenChoice choice = choices[row];
  if (choice.limit <= 0 || choice.temperature == 0.0) return;
  const float* values = logits + static_cast<size_t>(row) * stride;
  float localMax = choiceKey(values[0]);
  for (int v = threadIdx.x; v < choice.limit; v += kThreads) localMax = fmaxf(localMax, choiceKey(values[v]));
  const float maxKey = blockMaxOf<kThreads>(localMax, maxShared);

  double* base = bases + static_cast<size_t>(local) * 2 * basesPerRow;
  double* idBase = base + basesPerRow;
  const double temperature = choice.temperature;
  const auto weightOfId = [&](int id) { return choiceWeight(choiceKey(values[id]), maxKey, temperature); };
  const int n = choiceCandidates(choice);
  if (!choiceRanked(choice)) {
    chunkBases(weightOfId, n, base);
    if (threadIdx.x == 0) {
      const int q = choiceFirstAbove(weightOfId, base, n, __dmul_rn(choice.uniform, base[(n + kChoiceChunk - 1) /
                                                                                         kChoiceChunk]));
      tokens[row] = q < 0 ? n - 1 : q;
    }
    return;
  }
  const float* keys = sortedKeys + static_cast<size_t>(local) * stride;
  const int32_t* ids = sortedIds + static_cast<size_t>(local) * stride;
  const auto weightAtRank = [&](int q) { return choiceWeight(keys[q], maxKey, temperature); };
  const bool topKRestricts = n < choice.limit;
  chunkBases(weightAtRank, n, base);
  if (!topKRestricts) chunkBases(weightOfId, choice.limit, idBase);
  if (threadIdx.x != 0) return;
  const double total = topKRestricts ? base[(n + kChoiceChunk - 1) / kChoiceChunk]
                                     : idBase[(choice.limit + kChoiceChunk - 1) / kChoiceChunk];
  int kept = n;
  if (choice.topP < 1.0) {
    const int crossing = choiceFirstAbove(weightAtRank, base, n, __dmul_rn(choice.topP, total));
    if (crossing >= 0) kept = crossing + 1;
  }
  const double keptTotal = choiceRunningAt(weightAtRank, base, kept - 1);
  const int q = choiceFirstAbove(weightAtRank, base, kept, __dmul_rn(choice.uniform, keptTotal));
  tokens[row] = ids[q < 0 ? kept - 1 : q];
}

}  // namespace

void enqueueTokenChoice(const TokenChoiceRows& rows, StepArena& arena, cudaStream_t stream) {
  if (rows.rows == 0) return;
  greedyKernel<<<static_cast<unsigned>(rows.rows), kThreads, 0, stream>>>(rows.logits, rows.stride, rows.choices,
                                                                           rows.tokens);
  checkCuda(cudaGetLastError(), "launching the greedy choice");

  const size_t basesPerRow = chunksOf(rows.stride) + 1;
  const int block = std::min(rows.rows, rows.ranked ? kSortRows : rows.rows);
  double* bases = arena.take<double>(static_cast<size_t>(block) * 2 * basesPerRow, "the sampling sums");
  if (!rows.ranked) {
    sampleKernel<<<static_cast<unsigned>(rows.rows), kThreads, 0, stream>>>(
        rows.logits, rows.stride, rows.choices, 0, nullptr, nullptr, bases, basesPerRow, rows.tokens);
    checkCuda(cudaGetLastError(), "launching the sampling");
    return;
  }

  // The sort's arrays and scratch, sized once for a block of kSortRows rows and reused block after block.
  const size_t items = static_cast<size_t>(block) * rows.stride;
  if (items > static_cast<size_t>(INT32_MAX)) throw Error(code::kShape, "sampling: the logit rows are too long");
  float* keysIn = arena.take<float>(items, "the sampling keys");
  float* keysOut = arena.take<float>(items, "the ranked keys");
  int32_t* idsIn = arena.take<int32_t>(items, "the sampling ids");
  int32_t* idsOut = arena.take<int32_t>(items, "the ranked ids");
  int* segmentBegin = arena.take<int>(block, "the sort's segments");
  int* segmentEnd = arena.take<int>(block, "the sort's segments");
  size_t sortBytes = 0;
  checkCuda(cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, sortBytes, keysIn, keysOut, idsIn, idsOut,
                                                                static_cast<int>(items), block, segmentBegin,
                                                                segmentEnd, 0, 32, stream),
            "sizing the sampling sort");
  void* sortScratch = arena.take(sortBytes, "the sampling sort");
  for (int first = 0; first < rows.rows; first += block) {
    const int count = std::min(block, rows.rows - first);
    rankInputKernel<<<static_cast<unsigned>(count), kThreads, 0, stream>>>(
        rows.logits, rows.stride, rows.choices, first, keysIn, idsIn, segmentBegin, segmentEnd);
    checkCuda(cudaGetLastError(), "launching the sampling keys");
    // Stable: equal keys keep their ids' rising order, the CPU's tie rule.
    checkCuda(cub::DeviceSegmentedRadixSort::SortPairsDescending(sortScratch, sortBytes, keysIn, keysOut, idsIn,
                                                                  idsOut, static_cast<int>(items), count,
                                                                  segmentBegin, segmentEnd, 0, 32, stream),
              "ranking the sampled rows");
    sampleKernel<<<static_cast<unsigned>(count), kThreads, 0, stream>>>(
        rows.logits, rows.stride, rows.choices, first, keysOut, idsOut, bases, basesPerRow, rows.tokens);
    checkCuda(cudaGetLastError(), "launching the sampling");
  }
}

void chooseTokensOnDevice(const float* logits, int rows, int vocab, const TokenChoice* choices, int32_t* tokens) {
  requireDevice();
  if (rows <= 0 || vocab <= 0) throw Error(code::kShape, "chooseTokens: rows and vocab must be positive");
  OwnedStream stream;
  const size_t logitBytes = static_cast<size_t>(rows) * vocab * sizeof(float);
  DeviceBuffer deviceLogits(logitBytes, "allocating chooseTokens' logits");
  DeviceBuffer deviceChoices(static_cast<size_t>(rows) * sizeof(TokenChoice), "allocating its choices");
  DeviceBuffer deviceTokens(static_cast<size_t>(rows) * sizeof(int32_t), "allocating its tokens");
  checkCuda(cudaMemcpyAsync(deviceLogits.as<void>(), logits, logitBytes, cudaMemcpyHostToDevice, stream.get()),
            "copying chooseTokens' logits to the GPU");
  checkCuda(cudaMemcpyAsync(deviceChoices.as<void>(), choices, static_cast<size_t>(rows) * sizeof(TokenChoice),
                            cudaMemcpyHostToDevice, stream.get()),
            "copying its choices to the GPU");
  bool ranked = false;
  for (int r = 0; r < rows; ++r) {
    ranked = ranked || (choices[r].limit > 0 && choices[r].temperature > 0.0 && choiceRanked(choices[r]));
  }
  {
    StepArena arena(stream.get());
    TokenChoiceRows launch;
    launch.logits = deviceLogits.as<float>();
    launch.stride = static_cast<size_t>(vocab);
    launch.rows = rows;
    launch.choices = deviceChoices.as<TokenChoice>();
    launch.tokens = deviceTokens.as<int32_t>();
    launch.ranked = ranked;
    enqueueTokenChoice(launch, arena, stream.get());
    checkCuda(cudaMemcpyAsync(tokens, deviceTokens.as<void>(), static_cast<size_t>(rows) * sizeof(int32_t),
                              cudaMemcpyDeviceToHost, stream.get()),
              "copying the chosen tokens back");
    stream.synchronize("chooseTokens on the GPU");
  }
}

}  // namespace dynamoe::cuda
