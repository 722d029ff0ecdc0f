// Tensor-core grouped GEMM for f16/bf16 experts (fp32 accumulation): each tile of plan rows is
// gather(activations) x weights[group]^T, finished by the SwiGLU epilogue (GEMM 1) or the row-scaled one (GEMM 2).
// A persistent grid walks the tile table the plan wrote on the device, so launching needs no host synchronisation.
//
// Block tile BM (64 or 128) x 128 columns, k in stages of 32 through a 4-stage cp.async pipeline; 8 warps as
// 2 (rows) x 4 (columns), each warp BM/2 x 32 = (BM/32) m16 x 4 n8 mma tiles. Shared tile rows are 64 bytes with
// their four 16-byte chunks XOR-swizzled, so cp.async stores and ldmatrix loads are bank-conflict free.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../native/core/quant_groups.h"
#include "cuda_check.h"
#include "element_types.cuh"
#include "mma.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

constexpr int kTileCols = 128;                      // BN: output columns (weight rows) per block tile
constexpr int kTileDepth = 32;                      // BK: k elements per pipeline stage
constexpr int kStages = 4;                          // 3 stages in flight hide global latency at BK = 32
constexpr int kThreads = 256;                       // 8 warps
constexpr int kWarpsM = 2;                          // warp grid over the block tile: 2 row halves...
constexpr int kWarpsN = 4;                          // ... x 4 column quarters
constexpr int kWarpCols = kTileCols / kWarpsN;      // 32: two whole gate/up n16 blocks per warp (SwiGLU)
constexpr int kRowBytes = kTileDepth * 2;           // one stage row of 16-bit elements
constexpr int kChunksPerRow = kRowBytes / 16;       // 16-byte cp.async / ldmatrix chunks per stage row
constexpr int kRowsPerPass = kThreads / kChunksPerRow;  // rows the block copies per pass (one chunk a thread)
constexpr int kBandRows = 1024;                     // rows of a band of row tiles (work order, see workItemAt)

static_assert(kChunksPerRow == 4, "the swizzle below permutes exactly four chunks per row");
static_assert(kTileCols % kRowsPerPass == 0 && kWarpCols == 32, "B tile copy passes and SwiGLU pairs");

template <int BM>
constexpr int kSharedBytes = kStages * (BM + kTileCols) * kRowBytes;  // all stages of A and B

// Byte offset of 16-byte chunk `chunk` of stage row `row`. Chunks are XOR-ed with (row / 2) % 4: eight consecutive
// rows then cover (row % 2, (row / 2) % 4) = row % 8 once each, i.e. 8 distinct 16-byte bank groups of a 128-byte
// line, for any fixed logical chunk (one ldmatrix phase: 8 rows x 1 chunk) and for two rows x 4 chunks (one
// cp.async phase of 8 lanes). Adding a multiple of 8 rows keeps the XOR term, so callers may add row blocks as
// plain byte offsets.
__device__ __forceinline__ uint32_t swizzledOffset(int row, int chunk) {
  return static_cast<uint32_t>(row * kRowBytes + ((chunk ^ ((row >> 1) & 3)) << 4));
}

// Two adjacent outputs of the activation dtype, packed for one 32-bit store (lower column in the low half).
template <typename T>
struct ActivationPair;
template <>
struct ActivationPair<__half> {
  using Type = __half2;
  static __device__ __forceinline__ Type make(float low, float high) { return __floats2half2_rn(low, high); }
};
template <>
struct ActivationPair<__nv_bfloat16> {
  using Type = __nv_bfloat162;
  static __device__ __forceinline__ Type make(float low, float high) { return __floats2bfloat162_rn(low, high); }
};

// One (row tile, column tile) work item of the persistent loop.
struct WorkItem {
  int group;     // expert whose weights the tile multiplies
  int firstRow;  // first plan row of the tile
  int rows;      // valid rows (<= BM); rows past it are zero-filled and never stored
  int colTile;   // block of kTileCols weight rows / output columns
};

// Work order: row tiles are taken in bands of kBandRows / BM; inside a band consecutive items walk the band's row
// tiles for one column tile, then move to the next column tile. Blocks running together therefore read the same
// weight column tile (kTileCols weight rows of one expert, whose tiles are consecutive in the plan) from L2, and a
// band's gathered activation tiles stay in L2 for the whole column sweep: an expert's weights stream from DRAM
// about once per band rather than once per row tile, which matters once an expert's weights outgrow L2.
template <int BM>
__device__ WorkItem workItemAt(const GroupedGemm& gemm, int item, int tiles, int colTiles) {
  constexpr int kBandTiles = kBandRows / BM;
  const int band = item / (kBandTiles * colTiles);
  const int bandFirstTile = band * kBandTiles;
  const int bandTiles = min(kBandTiles, tiles - bandFirstTile);  // the last band may be short
  const int inBand = item - bandFirstTile * colTiles;
  const int tile = bandFirstTile + inBand % bandTiles;
  WorkItem work;
  work.colTile = inBand / bandTiles;
  work.group = gemm.tileGroup ? gemm.tileGroup[tile] : 0;
  work.firstRow = gemm.tileGroup ? gemm.tileRowStart[tile] : tile * BM;
  const int groupEnd = gemm.groupOffsets ? gemm.groupOffsets[work.group + 1] : gemm.rows;
  work.rows = min(BM, groupEnd - work.firstRow);
  return work;
}

// This thread's share of copying one stage: chunk (threadIdx % 4) of rows threadIdx / 4 + pass * 64, for the
// gathered A rows and the B (weight) rows of the current work item.
template <typename T, int BM>
struct StageLoader {
  static constexpr int kAPasses = BM / kRowsPerPass;
  static constexpr int kBPasses = kTileCols / kRowsPerPass;
  static constexpr uint32_t kPassBytes = kRowsPerPass * kRowBytes;  // 64 rows: keeps the swizzle term

  const T* aSource[kAPasses];  // this thread's chunk of each gathered input row, at k = 0
  bool aValid[kAPasses];       // false: row past the tile's end, zero-filled
  const T* bSource;            // this thread's chunk of its first weight row, at k = 0
  size_t bPassStride;          // elements from one pass's weight row to the next
  uint32_t storeOffset;        // swizzled destination of this thread's chunk in pass 0

  __device__ void start(const GroupedGemm& gemm, const WorkItem& work) {
    startA(gemm, work);
    const int row = threadIdx.x / kChunksPerRow;
    const int chunkElements = (threadIdx.x % kChunksPerRow) * (16 / static_cast<int>(sizeof(T)));
    const T* weights = static_cast<const T*>(gemm.weights) + static_cast<size_t>(work.group) * gemm.groupStride;
    bSource = weights + static_cast<size_t>(work.colTile * kTileCols + row) * gemm.k + chunkElements;
    bPassStride = static_cast<size_t>(kRowsPerPass) * gemm.k;
  }

  // The gathered activation rows only (what the quantized loader shares).
  __device__ void startA(const GroupedGemm& gemm, const WorkItem& work) {
    const int row = threadIdx.x / kChunksPerRow;
    const int chunk = threadIdx.x % kChunksPerRow;
    const int chunkElements = chunk * (16 / static_cast<int>(sizeof(T)));
    storeOffset = swizzledOffset(row, chunk);
    const T* input = static_cast<const T*>(gemm.input);
#pragma unroll
    for (int pass = 0; pass < kAPasses; ++pass) {
      const int tileRow = row + pass * kRowsPerPass;
      aValid[pass] = tileRow < work.rows;
      const int planRow = work.firstRow + tileRow;
      // Invalid rows point at input row 0: never read (src-size 0), but still a mapped address.
      const int inputRow = !aValid[pass] ? 0 : gemm.rowToken ? gemm.rowToken[planRow] : planRow;
      aSource[pass] = input + static_cast<size_t>(inputRow) * gemm.inputStride + chunkElements;
    }
  }

  // Issues the cp.async of k stage `kTile` into the stage buffers at aStage / bStage (no commit).
  __device__ void load(uint32_t aStage, uint32_t bStage, int kTile) const {
    loadA(aStage, kTile);
    const int kOffset = kTile * kTileDepth;
#pragma unroll
    for (int pass = 0; pass < kBPasses; ++pass) {
      mma::copyAsync16(bStage + storeOffset + pass * kPassBytes, bSource + pass * bPassStride + kOffset, true);
    }
  }

  __device__ void loadA(uint32_t aStage, int kTile) const {
    const int kOffset = kTile * kTileDepth;
#pragma unroll
    for (int pass = 0; pass < kAPasses; ++pass) {
      mma::copyAsync16(aStage + storeOffset + pass * kPassBytes, aSource[pass] + kOffset, aValid[pass]);
    }
  }
};

// The same stages with quantized weights (GroupedGemm::quant = kType): A (activations) still by cp.async; B is
// decoded here: thread t dequantizes weight row t / 2's group of 16 at k = 32 * kTile + 16 * (t % 2) with the core's
// decoder (quant_groups.h), rounds it to T and stores it as stage chunks 2 (t % 2) and 2 (t % 2) + 1, swizzled like
// the cp.async path, so the MMA loop reads both alike. The k-quants' 256-value blocks hold 16 such groups each.
template <typename T, int BM, QuantType kType>
struct QuantStageLoader {
  static constexpr int kGroupsPerStage = kTileDepth / kQuantGroupElements;  // 2: one per thread of a row pair
  static_assert(kThreads == kTileCols * kGroupsPerStage, "one thread per (weight row, group) of a stage");

  StageLoader<T, BM> activations;  // its A half only (startA, loadA)
  const uint8_t* weightRow;        // this thread's weight row
  int firstGroup;                  // this thread's group within a stage: 0 or 1
  uint32_t storeOffset[2];         // swizzled destinations of the group's two 16-byte chunks

  __device__ void start(const GroupedGemm& gemm, const WorkItem& work) {
    activations.startA(gemm, work);
    const int row = threadIdx.x / kGroupsPerStage;
    firstGroup = threadIdx.x % kGroupsPerStage;
    weightRow = static_cast<const uint8_t*>(gemm.weights) + static_cast<size_t>(work.group) * gemm.groupStride +
                static_cast<size_t>(work.colTile * kTileCols + row) * gemm.weightRowBytes;
    storeOffset[0] = swizzledOffset(row, 2 * firstGroup);
    storeOffset[1] = swizzledOffset(row, 2 * firstGroup + 1);
  }

  __device__ void load(uint32_t aStage, uint32_t bStage, int kTile) const {
    activations.loadA(aStage, kTile);
    constexpr QuantTraits kTraits = quantTraits(kType);
    constexpr int kGroupsPerBlock = kTraits.blockElements / kQuantGroupElements;
    const int group = kTile * kGroupsPerStage + firstGroup;  // of the row
    const int block = group / kGroupsPerBlock;
    float values[kQuantGroupElements];
    dequantizeGroup16(kType, weightRow + static_cast<size_t>(block) * kTraits.blockBytes,
                      group - block * kGroupsPerBlock, values);
    uint32_t packed[kQuantGroupElements / 2];
#pragma unroll
    for (int i = 0; i < kQuantGroupElements / 2; ++i) {
      const typename ActivationPair<T>::Type pair = ActivationPair<T>::make(values[2 * i], values[2 * i + 1]);
      packed[i] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    mma::storeShared16(bStage + storeOffset[0], make_uint4(packed[0], packed[1], packed[2], packed[3]));
    mma::storeShared16(bStage + storeOffset[1], make_uint4(packed[4], packed[5], packed[6], packed[7]));
  }
};

// The loader of a GEMM's stages: cp.async of both operands, or of A with B dequantized from kType blocks.
template <typename T, int BM, QuantType kType>
using LoaderOf = std::conditional_t<kType == QuantType::None, StageLoader<T, BM>, QuantStageLoader<T, BM, kType>>;

// Fills stages 0 .. kStages-2, one commit group each (empty past the last k stage, so group counts stay fixed).
template <int BM, typename Loader>
__device__ void startPipeline(const Loader& loader, uint32_t aBase, uint32_t bBase, int kTiles) {
#pragma unroll
  for (int stage = 0; stage < kStages - 1; ++stage) {
    if (stage < kTiles) {
      loader.load(aBase + stage * BM * kRowBytes, bBase + stage * kTileCols * kRowBytes, stage);
    }
    mma::commitAsync();
  }
}

// m16 fragments per warp: the warp covers BM / kWarpsM rows.
template <int BM>
constexpr int kWarpRowFragments = BM / kWarpsM / 16;

// SwiGLU: acc[mi][2p] / acc[mi][2p + 1] are the gate / up n8 blocks of n16 block p of this warp (the x4 ldmatrix of
// weight rows 16p..16p+15 gave registers 0-1 = gate rows, 2-3 = up rows), so both values of a feature sit in the
// same register slot of the same thread: h = silu(gate) * up, feature f = 8 * (n16 block) + column in the n8 block.
template <typename T, int BM>
__device__ void storeSwiGlu(const GroupedGemm& gemm, const WorkItem& work,
                            const float (&acc)[kWarpRowFragments<BM>][4][4], int warpRow, int warpCol, int lane) {
  using Pair = ActivationPair<T>;
  T* output = static_cast<T*>(gemm.output);
  const int laneRow = lane >> 2;        // g: C rows g and g + 8
  const int laneCol = (lane & 3) * 2;   // 2t: C columns 2t, 2t + 1
#pragma unroll
  for (int mi = 0; mi < kWarpRowFragments<BM>; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // c[0..1] are row g, c[2..3] row g + 8
      const int tileRow = warpRow + mi * 16 + laneRow + half * 8;
      if (tileRow >= work.rows) continue;
      T* outRow = output + static_cast<size_t>(work.firstRow + tileRow) * gemm.outputStride;
#pragma unroll
      for (int pair = 0; pair < 2; ++pair) {
        // n16 block b = (colTile * 128 + warpCol + 16 * pair) / 16 holds features 8b .. 8b + 7.
        const int feature = (work.colTile * kTileCols + warpCol + pair * 16) / 2 + laneCol;
        const float* gate = acc[mi][2 * pair];
        const float* up = acc[mi][2 * pair + 1];
        const typename Pair::Type h = Pair::make(silu(gate[2 * half]) * up[2 * half],
                                                 silu(gate[2 * half + 1]) * up[2 * half + 1]);
        *reinterpret_cast<typename Pair::Type*>(outRow + feature) = h;
      }
    }
  }
}

// Scaled: fp32 output = acc * rowScale[row], two adjacent columns per 8-byte store.
template <int BM>
__device__ void storeScaled(const GroupedGemm& gemm, const WorkItem& work,
                            const float (&acc)[kWarpRowFragments<BM>][4][4], int warpRow, int warpCol, int lane) {
  float* output = static_cast<float*>(gemm.output);
  const int laneRow = lane >> 2;
  const int laneCol = (lane & 3) * 2;
#pragma unroll
  for (int mi = 0; mi < kWarpRowFragments<BM>; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int tileRow = warpRow + mi * 16 + laneRow + half * 8;
      if (tileRow >= work.rows) continue;
      const int row = work.firstRow + tileRow;
      const float scale = gemm.rowScale ? gemm.rowScale[row] : 1.0f;
      float* outRow = output + static_cast<size_t>(row) * gemm.outputStride;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int col = work.colTile * kTileCols + warpCol + ni * 8 + laneCol;
        *reinterpret_cast<float2*>(outRow + col) =
            make_float2(acc[mi][ni][2 * half] * scale, acc[mi][ni][2 * half + 1] * scale);
      }
    }
  }
}

// Register budget: 2 resident blocks (<= 128 registers a thread) at BM = 128, 3 at BM = 64 (<= 80).
template <int BM>
constexpr int kMinResidentBlocks = BM == 64 ? 3 : 2;

template <typename T, int BM, Epilogue kEpilogue, QuantType kType>
__global__ void __launch_bounds__(kThreads, kMinResidentBlocks<BM>)
    groupedGemmMma(const GroupedGemm gemm, int denseTiles) {
  extern __shared__ __align__(128) unsigned char stageMemory[];
  constexpr int kFragsM = kWarpRowFragments<BM>;

  const int colTiles = gemm.n / kTileCols;
  const int tiles = gemm.tileGroup ? *gemm.tileCount : denseTiles;  // the routing decided it, on the device
  const int items = tiles * colTiles;
  int item = blockIdx.x;
  if (item >= items) return;

  const int kTiles = gemm.k / kTileDepth;
  const uint32_t aBase = mma::sharedAddress(stageMemory);
  const uint32_t bBase = aBase + kStages * BM * kRowBytes;

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warpRow = (warp / kWarpsN) * (BM / kWarpsM);
  const int warpCol = (warp % kWarpsN) * kWarpCols;

  // ldmatrix row addresses of this lane, per k16 step of a stage (see mma.cuh for the matrix order):
  // A x4 = rows 0-7 / 8-15 at k 0-7, then rows 0-7 / 8-15 at k 8-15 -> lane l: row l % 16, chunk l / 16.
  // B x4 = weight rows 0-7 at k 0-7 / k 8-15, then rows 8-15 at k 0-7 / k 8-15 -> lane l: row (l % 8) + 8 (l / 16),
  // chunk (l / 8) % 2; registers 0-1 are the first n8 fragment, 2-3 the second.
  uint32_t aFragment[2];
  uint32_t bFragment[2];
#pragma unroll
  for (int step = 0; step < 2; ++step) {
    aFragment[step] = swizzledOffset(warpRow + (lane & 15), step * 2 + (lane >> 4));
    bFragment[step] = swizzledOffset(warpCol + (lane & 7) + ((lane >> 4) << 3), step * 2 + ((lane >> 3) & 1));
  }

  WorkItem work = workItemAt<BM>(gemm, item, tiles, colTiles);
  LoaderOf<T, BM, kType> loader;
  loader.start(gemm, work);
  startPipeline<BM>(loader, aBase, bBase, kTiles);

  for (;;) {
    float acc[kFragsM][4][4];
#pragma unroll
    for (int mi = 0; mi < kFragsM; ++mi) {
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;
      }
    }

    int readStage = 0;
    int writeStage = kStages - 1;
    for (int kTile = 0; kTile < kTiles; ++kTile) {
      // Groups committed so far: kStages - 1 + kTile; allowing kStages - 2 pending means stage kTile has landed.
      mma::waitAsync<kStages - 2>();
      // Publishes stage kTile to every warp, and proves every warp is done with the stage refilled below (the one
      // read at kTile - 1).
      __syncthreads();
      if (kTile + kStages - 1 < kTiles) {
        loader.load(aBase + writeStage * BM * kRowBytes, bBase + writeStage * kTileCols * kRowBytes,
                    kTile + kStages - 1);
      }
      mma::commitAsync();
      writeStage = writeStage + 1 == kStages ? 0 : writeStage + 1;

      const uint32_t aStage = aBase + readStage * BM * kRowBytes;
      const uint32_t bStage = bBase + readStage * kTileCols * kRowBytes;
#pragma unroll
      for (int step = 0; step < 2; ++step) {  // two k16 steps per 32-deep stage
        uint32_t a[kFragsM][4];
        uint32_t b[2][4];
#pragma unroll
        for (int mi = 0; mi < kFragsM; ++mi) {
          mma::loadMatrixX4(a[mi], aStage + aFragment[step] + mi * 16 * kRowBytes);
        }
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          mma::loadMatrixX4(b[pair], bStage + bFragment[step] + pair * 16 * kRowBytes);
        }
#pragma unroll
        for (int mi = 0; mi < kFragsM; ++mi) {
#pragma unroll
          for (int pair = 0; pair < 2; ++pair) {
            mma::mmaM16N8K16<T>(acc[mi][2 * pair], a[mi], b[pair][0], b[pair][1]);
            mma::mmaM16N8K16<T>(acc[mi][2 * pair + 1], a[mi], b[pair][2], b[pair][3]);
          }
        }
      }
      readStage = readStage + 1 == kStages ? 0 : readStage + 1;
    }
    // Every warp is done reading the stages before the next item's prologue overwrites them (only empty groups
    // are still pending: every real one was waited for before its stage was read).
    __syncthreads();

    // Start the next item's loads first, so their latency hides behind this item's epilogue.
    const WorkItem finished = work;
    const int nextItem = item + static_cast<int>(gridDim.x);
    if (nextItem < items) {
      work = workItemAt<BM>(gemm, nextItem, tiles, colTiles);
      loader.start(gemm, work);
      startPipeline<BM>(loader, aBase, bBase, kTiles);
    }

    if constexpr (kEpilogue == Epilogue::SwiGlu) {
      storeSwiGlu<T, BM>(gemm, finished, acc, warpRow, warpCol, lane);
    } else {
      storeScaled<BM>(gemm, finished, acc, warpRow, warpCol, lane);
    }
    // Counted once per row tile (by its column tile 0); integer adds commute, so the totals are deterministic.
    if (gemm.rowsComputed && finished.colTile == 0 && threadIdx.x == 0 && finished.rows > 0) {
      atomicAdd(gemm.rowsComputed + finished.group, finished.rows);
    }

    if (nextItem >= items) break;
    item = nextItem;
  }
}

void requireArgument(bool ok, const char* what) {
  if (!ok) checkCuda(cudaErrorInvalidValue, what);
}

bool aligned(const void* pointer, size_t bytes) { return reinterpret_cast<uintptr_t>(pointer) % bytes == 0; }

// Function attributes and occupancy are per device: cached for the first devices, recomputed beyond.
constexpr int kCachedDevices = 16;

// Raises the dynamic shared memory limit of `kernel` when needed and returns its resident blocks per multiprocessor.
int prepareKernel(const void* kernel, int smemBytes, std::atomic<int> (&cache)[kCachedDevices]) {
  int device = 0;
  checkCuda(cudaGetDevice(&device), "launchGemmMma (cudaGetDevice)");
  const bool cacheable = device >= 0 && device < kCachedDevices;
  if (cacheable) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  if (smemBytes > 48 * 1024) {  // the default limit for dynamic shared memory
    checkCuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes),
              "launchGemmMma (cudaFuncSetAttribute)");
  }
  int blocks = 0;
  checkCuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, smemBytes),
            "launchGemmMma (occupancy)");
  blocks = std::max(blocks, 1);  // 0 would only mean the launch fails, and it reports why
  if (cacheable) cache[device].store(blocks, std::memory_order_relaxed);
  return blocks;
}

template <typename T, int BM, Epilogue kEpilogue, QuantType kType>
void launchInstance(const GroupedGemm& gemm, cudaStream_t stream) {
  static std::atomic<int> blocksPerSmCache[kCachedDevices] = {};
  const auto kernel = groupedGemmMma<T, BM, kEpilogue, kType>;
  const int blocksPerSm = prepareKernel(reinterpret_cast<const void*>(kernel), kSharedBytes<BM>, blocksPerSmCache);

  const int colTiles = gemm.n / kTileCols;
  const int denseTiles = gemm.tileGroup ? 0 : (gemm.rows + BM - 1) / BM;
  const int tileBound = gemm.tileGroup ? gemm.maxTiles : denseTiles;
  long long grid = static_cast<long long>(tileBound) * colTiles;
  if (gemm.multiprocessors > 0) grid = std::min(grid, static_cast<long long>(blocksPerSm) * gemm.multiprocessors);
  if (grid <= 0) return;  // no rows: nothing to multiply (and no rowsComputed to add)

  kernel<<<static_cast<unsigned>(grid), kThreads, kSharedBytes<BM>, stream>>>(gemm, denseTiles);
  checkCuda(cudaGetLastError(), "launchGemmMma");
}

template <typename T, QuantType kType>
void launchForQuant(const GroupedGemm& gemm, Epilogue epilogue, cudaStream_t stream) {
  const bool swiGlu = epilogue == Epilogue::SwiGlu;
  if (gemm.tileRows == 64) {
    swiGlu ? launchInstance<T, 64, Epilogue::SwiGlu, kType>(gemm, stream)
           : launchInstance<T, 64, Epilogue::Scaled, kType>(gemm, stream);
  } else {
    swiGlu ? launchInstance<T, 128, Epilogue::SwiGlu, kType>(gemm, stream)
           : launchInstance<T, 128, Epilogue::Scaled, kType>(gemm, stream);
  }
}

// Quantized weights take bf16 activations (what every quantized layer converts its input to): one instance set per
// type.
void launchQuantized(const GroupedGemm& gemm, Epilogue epilogue, cudaStream_t stream) {
  const bool known = visitQuantType(gemm.quant, [&](auto type) {
    launchForQuant<__nv_bfloat16, decltype(type)::value>(gemm, epilogue, stream);
  });
  requireArgument(known, "launchGemmMma: no quantized type");
}

}  // namespace

// 64-row tiles waste less on small groups; 128 halves the weight traffic per row once groups fill them.
int mmaTileRows(int expectedRowsPerGroup) { return expectedRowsPerGroup <= 64 ? 64 : 128; }

void launchGemmMma(const GroupedGemm& gemm, Epilogue epilogue, cudaStream_t stream) {
  requireArgument(gemm.dtype != DType::F32, "launchGemmMma: f32 has no tensor-core path (use launchGemmSimtF32)");
  requireArgument(gemm.tileRows == 64 || gemm.tileRows == 128, "launchGemmMma: tileRows must be 64 or 128");
  requireArgument(gemm.n > 0 && gemm.n % kTileCols == 0, "launchGemmMma: n must be a positive multiple of 128");
  requireArgument(gemm.k > 0 && gemm.k % kTileDepth == 0, "launchGemmMma: k must be a positive multiple of 32");
  requireArgument(!gemm.tileGroup || (gemm.tileRowStart && gemm.tileCount),
                  "launchGemmMma: a tile table needs tileRowStart and tileCount");
  // cp.async moves 16-byte chunks: rows and groups must start on 16-byte boundaries.
  requireArgument(gemm.inputStride % 8 == 0 && aligned(gemm.input, 16) &&
                      (gemm.quant != QuantType::None || (gemm.groupStride % 8 == 0 && aligned(gemm.weights, 16))),
                  "launchGemmMma: input and weights must be 16-byte aligned with strides a multiple of 8");
  // The epilogues store two adjacent columns at once (4 bytes for SwiGLU, 8 for Scaled).
  requireArgument(gemm.outputStride % 2 == 0 && aligned(gemm.output, epilogue == Epilogue::SwiGlu ? 4 : 8),
                  "launchGemmMma: output must be aligned for paired stores with an even outputStride");
  if (gemm.quant != QuantType::None) {
    requireArgument(gemm.dtype == DType::BF16, "launchGemmMma: quantized weights take bf16 activations");
    requireArgument(gemm.k % quantTraits(gemm.quant).blockElements == 0 &&
                        gemm.weightRowBytes == quantRowBytes(gemm.quant, gemm.k),
                    "launchGemmMma: quantized rows must be k / blockElements whole blocks");
    launchQuantized(gemm, epilogue, stream);
  } else if (gemm.dtype == DType::F16) {
    launchForQuant<__half, QuantType::None>(gemm, epilogue, stream);
  } else {
    launchForQuant<__nv_bfloat16, QuantType::None>(gemm, epilogue, stream);
  }
}

}  // namespace dynamoe::cuda
