#include "grouped_gemm.h"

#include <algorithm>

#include "../thread_pool.h"
#include "thread_scratch.h"

namespace dynamoe::cpu {

namespace {

constexpr int kMaxTileRows = 8;                // the widest kernel family (AVX-512)
// Rows of one work item. Every K slice of a weight panel brought into L1 serves all of them, so weights are read
// from memory once per 256 rows; the activation rows stream from L2/L3 instead (sizing the chunk to keep them in
// L2 gave 8-24 rows at K = 2048-5632 and made large layers bandwidth-bound: 92 instead of 147 GFLOP/s at H=2048).
constexpr int kRowChunk = 256;
constexpr size_t kPanelSliceBytes = 16 * 1024;  // K slice of a panel that stays in L1 while every row tile uses it
constexpr size_t kStagedRowPad = 16;             // floats: staged rows are K plus one cache line apart
constexpr int kStagingRowBlock = 32;             // rows copied per staging task
constexpr int kWideTileMinRows = 24;             // rows from which an item runs the family's widest tiles

struct WorkItem {
  int group;
  int firstRow;
  int rowCount;
  int panel;
};

// Rows per item of a group of `rows` rows: as few chunks as keep each near kRowChunk, of equal size in whole tiles.
// (Chunks of kRowChunk rounded down to whole tiles left 256 rows as 252 + 4 or 255 + 1, and the small chunk
// streamed every panel again for a few rows: one 256-row group at H=2048, F=5632 ran 1.5-2% slower on AVX2.)
int rowChunkFor(int rows, int tileRows) {
  const int chunks = (rows + kRowChunk - 1) / kRowChunk;
  const int perChunk = (rows + chunks - 1) / chunks;
  return (perChunk + tileRows - 1) / tileRows * tileRows;
}

int kSliceFor(DType dtype) { return static_cast<int>(kPanelSliceBytes / (kPanelWidth * dtypeBytes(dtype))); }

// Row chunk outermost within a group, so consecutive items (taken by different threads) share activation rows.
std::vector<WorkItem> planItems(const std::vector<GemmGroup>& groups, int tileRows) {
  std::vector<WorkItem> items;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GemmGroup& group = groups[g];
    if (group.rows == 0) continue;
    const int chunk = rowChunkFor(group.rows, tileRows);
    for (int first = 0; first < group.rows; first += chunk) {
      const int count = std::min(chunk, group.rows - first);
      for (int p = 0; p < group.weights->panels(); ++p) items.push_back({static_cast<int>(g), first, count, p});
    }
  }
  return items;
}

// Whether `kernels` multiply `dtype` weights on activation rows rounded to bf16, one K slice at a time into
// contiguous scratch (families with bf16 dot products, on bf16 weights).
bool roundsRows(const TileKernels& kernels, DType dtype) {
  return dtype == DType::BF16 && kernels.roundRowBf16 != nullptr;
}

// Per-thread scratch, grown once to the largest item.
struct ItemScratch {
  std::vector<float> partial;     // running sums of every row tile across K slices
  std::vector<float> widened;     // one K slice of a 16-bit panel widened to f32
  std::vector<uint16_t> rounded;  // one K slice of every row, rounded to bf16 for dot-product tiles
};

void runItem(const TileKernels& kernels, const GemmGroup& group, const WorkItem& item, Epilogue epilogue,
             ItemScratch& scratch) {
  const PackedMatrix& weights = *group.weights;
  const DType dtype = weights.dtype();
  const size_t elementBytes = dtypeBytes(dtype);
  // A streaming tile (few rows) reuses nothing from L1, so it takes the whole K range in one call: no partial sums
  // round trip, and its accumulator sets stream far-apart parts of the panel.
  const bool oneCall = item.rowCount <= kernels.maxStreamingRows;
  // With more rows than that, widen each 16-bit K slice once and run the f32 tiles on it; one streaming tile
  // converts in registers instead (no store and reload). Families with bf16 dot products never widen bf16: they
  // round the activation rows to bf16 instead.
  const WidenFn widen = kernels.widen[dtypeIndex(dtype)];
  const bool widenOnce = widen != nullptr && !oneCall;
  const bool roundRows = roundsRows(kernels, dtype);
  const TileFn tile = kernels.tile[dtypeIndex(widenOnce ? DType::F32 : dtype)];
  const int k = weights.k();
  // Items of few rows are bound by streaming their panel and run streaming tiles; only items of many rows, whose
  // slices every tile reuses from L1, take the family's widest tiles (6-row AVX2 tiles on items of 7-23 rows, with
  // groups of 4-6 rows not staged, made f32 at 16 tokens 3-5% slower).
  const int tileRows = item.rowCount < kWideTileMinRows ? kernels.maxStreamingRows : kernels.maxRows;
  const int kSlice = oneCall ? k : kSliceFor(widenOnce ? DType::F32 : dtype);
  const size_t columnOffset = static_cast<size_t>(item.panel) * epilogueColumns(epilogue);
  const char* const panelStart = static_cast<const char*>(weights.panel(item.panel));
  const size_t linesPerRow = kPanelWidth * elementBytes / 64;  // of the stored panel: 1 (16-bit) or 2 (f32)
  const int tiles = (item.rowCount + tileRows - 1) / tileRows;
  const size_t roundedStride = static_cast<size_t>(storedK(DType::BF16, kSlice));
  scratch.partial.resize(static_cast<size_t>(item.rowCount) * kPanelWidth);
  if (widenOnce) scratch.widened.resize(static_cast<size_t>(kSlice) * kPanelWidth);
  if (roundRows) scratch.rounded.resize(static_cast<size_t>(item.rowCount) * roundedStride);
  static const float kOnes[kMaxTileRows] = {1, 1, 1, 1, 1, 1, 1, 1};
  auto inputRow = [&](int row, int kBegin) {
    const size_t inputRow = group.inputRowIndex ? static_cast<size_t>(group.inputRowIndex[row]) : row;
    return group.input + inputRow * group.inputStride + kBegin;
  };

  TileJob job{};
  job.epilogue = epilogue;
  const void* rows[kMaxTileRows];
  float* out[kMaxTileRows];
  job.rows = rows;
  job.out = out;
  // K slices outermost: one slice of the panel is reused from L1 by every row tile of the chunk.
  for (int kBegin = 0; kBegin < k; kBegin += kSlice) {
    job.k = std::min(k, kBegin + kSlice) - kBegin;
    job.first = kBegin == 0;
    job.last = kBegin + job.k == k;
    job.panel = panelStart + static_cast<size_t>(kBegin) * kPanelWidth * elementBytes;
    if (widenOnce) {
      widen(job.panel, job.k, scratch.widened.data());
      job.panel = scratch.widened.data();
    }
    if (roundRows) {
      // Every panel item of a row chunk rounds the same rows again (about 8% of the dot tile's instructions in
      // prefill, counted, not measured). withStagedRows() could round them once per GEMM instead; not done, since
      // this family lost to widening on the one AVX512_BF16 CPU measured, and this path cannot run on the dev VM.
      for (int r = 0; r < item.rowCount; ++r) {
        kernels.roundRowBf16(inputRow(item.firstRow + r, kBegin), job.k, scratch.rounded.data() + r * roundedStride);
      }
    }
    // While the row tiles compute on this slice, they fetch the next, each an equal share of its lines (one per k):
    // otherwise memory sits idle between slices, most visibly when an expert has few rows per slice. Spread over
    // every tile, not fetched by the first ones: with 6-row AVX2 tiles, fetching the whole next slice early evicted
    // the current one from a 32 KiB L1. Only a whole next slice, so no fetch passes the panel's end.
    const char* nextSlice = !oneCall && kBegin + 2 * kSlice <= k
                                ? panelStart + static_cast<size_t>(kBegin + kSlice) * kPanelWidth * elementBytes
                                : nullptr;
    const size_t sliceLines = static_cast<size_t>(kSlice) * linesPerRow;
    // At most kSlice, one per k: a sliced item has at least linesPerRow tiles.
    const size_t linesPerTile = (sliceLines + tiles - 1) / tiles;
    for (int first = item.firstRow; first < item.firstRow + item.rowCount; first += tileRows) {
      const size_t firstLine = static_cast<size_t>((first - item.firstRow) / tileRows) * linesPerTile;
      job.prefetch = nextSlice ? nextSlice + firstLine * 64 : nullptr;
      const size_t linesLeft = sliceLines - std::min(sliceLines, firstLine);
      job.prefetchLines = nextSlice ? static_cast<int>(std::min(linesPerTile, linesLeft)) : 0;
      job.rowCount = std::min(tileRows, item.firstRow + item.rowCount - first);
      for (int r = 0; r < job.rowCount; ++r) {
        const int row = first + r;
        rows[r] = roundRows ? static_cast<const void*>(scratch.rounded.data() + (row - item.firstRow) * roundedStride)
                            : inputRow(row, kBegin);
        out[r] = group.output + static_cast<size_t>(row) * group.outputStride + columnOffset;
      }
      job.partial = scratch.partial.data() + static_cast<size_t>(first - item.firstRow) * kPanelWidth;
      job.rowScale = group.rowScale ? group.rowScale + first : kOnes;
      tile(job);
    }
  }
  if (item.panel == 0 && group.rowsComputed) group.rowsComputed->fetch_add(item.rowCount, std::memory_order_relaxed);
}

// Rows a multiple of 2 KiB apart share L1 sets (half of a tile's rows at 2 KiB, all of them at 4 KiB, as f32 rows of
// hidden 1024 or 2048 are), so the row streams of a tile evict the panel slice that every tile reuses. When a group
// is too large for one streaming tile, its rows are copied once per GEMM into rows one cache line longer than K.
// Families that round bf16 rows per K slice already read them from contiguous scratch.
bool stagesRows(const GemmGroup& group, const TileKernels& kernels) {
  return group.rows > kernels.maxStreamingRows && !roundsRows(kernels, group.weights->dtype()) &&
         group.inputStride * sizeof(float) % 2048 == 0;
}

// `groups` with each group that stagesRows() reading a contiguous copy of its rows (made in parallel) instead.
std::vector<GemmGroup> withStagedRows(const std::vector<GemmGroup>& groups, const TileKernels& kernels,
                                      ScratchBuffers& scratch, AlignedBuffer& oversize) {
  struct RowBlock {
    size_t group;
    int firstRow;
  };
  std::vector<GemmGroup> staged = groups;
  std::vector<RowBlock> blocks;
  std::vector<size_t> offsets(groups.size());
  size_t floats = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!stagesRows(groups[g], kernels)) continue;
    offsets[g] = floats;
    floats += static_cast<size_t>(groups[g].rows) * (groups[g].weights->k() + kStagedRowPad);
    for (int first = 0; first < groups[g].rows; first += kStagingRowBlock) blocks.push_back({g, first});
  }
  if (blocks.empty()) return staged;
  float* const copies = static_cast<float*>(scratch.get(ScratchSlot::StagedRows, floats * sizeof(float), oversize));
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!stagesRows(groups[g], kernels)) continue;
    staged[g].input = copies + offsets[g];
    staged[g].inputStride = groups[g].weights->k() + kStagedRowPad;
    staged[g].inputRowIndex = nullptr;
  }
  cpuThreadPool().parallelFor(blocks.size(), [&](size_t b) {
    const size_t g = blocks[b].group;
    const GemmGroup& from = groups[g];
    float* const destination = copies + offsets[g];
    const int end = std::min(from.rows, blocks[b].firstRow + kStagingRowBlock);
    for (int row = blocks[b].firstRow; row < end; ++row) {
      const size_t source = from.inputRowIndex ? static_cast<size_t>(from.inputRowIndex[row]) : row;
      std::copy_n(from.input + source * from.inputStride, from.weights->k(),
                  destination + static_cast<size_t>(row) * staged[g].inputStride);
    }
  });
  return staged;
}

}  // namespace

void runGroupedGemm(const std::vector<GemmGroup>& inputGroups, Epilogue epilogue, ScratchBuffers* scratch) {
  const TileKernels& kernels = activeTileKernels();  // one family for the whole job
  AlignedBuffer oversizeStaging;
  const std::vector<GemmGroup> groups =
      withStagedRows(inputGroups, kernels, scratch ? *scratch : threadScratchBuffers(), oversizeStaging);
  const std::vector<WorkItem> items = planItems(groups, kernels.maxRows);
  cpuThreadPool().parallelFor(items.size(), [&](size_t i) {
    thread_local ItemScratch scratch;
    runItem(kernels, groups[items[i].group], items[i], epilogue, scratch);
  });
}

}  // namespace dynamoe::cpu
