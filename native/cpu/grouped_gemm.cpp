#include "grouped_gemm.h"

#include <algorithm>
#include <cmath>

#include "quant_int.h"
#include "thread_pool.h"
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
constexpr size_t kRoundedRowPad = 32;            // bf16 values: the same for rows rounded to bf16
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

// Whether `kernels` multiply `dtype` weights on activation rows rounded to bf16 (families with bf16 dot products,
// on bf16 weights).
bool roundsRows(const TileKernels& kernels, DType dtype) {
  return dtype == DType::BF16 && kernels.roundRowBf16 != nullptr;
}

// How the tiles read a group's rows.
enum class Staging {
  None,       // where the caller put them
  Copy,       // f32 copies one cache line longer than K (see stagingFor)
  RoundBf16,  // rounded to bf16 once per GEMM for dot-product tiles, one cache line longer than K
  Quantize8,  // quantized to 8-bit blocks (quant_int.h) once per GEMM, each row from its own values, for the
              // integer dots of quantized weights
};

// The activation blocks of a group's integer dots; None where its weights take the f32 path.
ActQuant integerActivations(const GemmGroup& group) {
  if (!group.weights->quantized() || !quantIntegerDots()) return ActQuant::None;
  return activationQuantFor(group.weights->quant());
}

// Rows a multiple of 2 KiB apart share L1 sets (half of a tile's rows at 2 KiB, all of them at 4 KiB, as f32 rows of
// hidden 1024 or 2048 are), so the row streams of a tile evict the panel slice that every tile reuses. When a group
// is too large for one streaming tile, its rows are copied once per GEMM into rows one cache line longer than K.
// Dot-product tiles always read rounded copies: rounding once per GEMM instead of once per panel item and K slice
// (every item of a row chunk rounded the same rows again: about 8% of the dot tile's instructions in prefill).
Staging stagingFor(const GemmGroup& group, const TileKernels& kernels) {
  if (integerActivations(group) != ActQuant::None) return Staging::Quantize8;
  if (group.weights->quantized()) return Staging::None;  // the quantized f32 dot reads rows where they are
  if (roundsRows(kernels, group.weights->dtype())) return Staging::RoundBf16;
  if (group.rows > kernels.maxStreamingRows && group.inputStride * sizeof(float) % 2048 == 0) return Staging::Copy;
  return Staging::None;
}

// A group as the work items read it.
struct StagedGroup {
  GemmGroup gemm;                          // with Staging::Copy, input points at the copies
  const uint16_t* roundedRows = nullptr;   // Staging::RoundBf16: row i at roundedRows + i * roundedStride
  size_t roundedStride = 0;                // uint16 values
  ActQuant actQuant = ActQuant::None;      // Staging::Quantize8: row i at quantRows + i * quantStride bytes
  const uint8_t* quantRows = nullptr;
  size_t quantStride = 0;
};

// Row chunk outermost within a group, so consecutive items (taken by different threads) share activation rows.
std::vector<WorkItem> planItems(const std::vector<StagedGroup>& groups, int tileRows) {
  std::vector<WorkItem> items;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GemmGroup& group = groups[g].gemm;
    if (group.rows == 0) continue;
    const int chunk = rowChunkFor(group.rows, tileRows);
    for (int first = 0; first < group.rows; first += chunk) {
      const int count = std::min(chunk, group.rows - first);
      for (int p = 0; p < group.weights->panels(); ++p) items.push_back({static_cast<int>(g), first, count, p});
    }
  }
  return items;
}

// Per-thread scratch, grown once to the largest item.
struct ItemScratch {
  std::vector<float> partial;     // running sums of every row tile across K slices
  std::vector<float> widened;     // one K slice of a 16-bit panel widened to f32
};

// The epilogue of a quantized item's rows [first, first + rowCount): sums[column][r] of the panel's weight rows.
template <int kRows>
void storeQuantRows(const TileKernels& kernels, const GemmGroup& group, Epilogue epilogue,
                    const float (&sums)[kPanelWidth][kRows], int first, int rowCount, size_t columnOffset) {
  // SwiGLU over the whole gate and up blocks at once, with the family's vector exp (rows past rowCount are zeros).
  float activated[kSwiGluColumns][kRows];
  if (epilogue == Epilogue::SwiGlu) kernels.swiGlu(sums[0], sums[kSwiGluColumns], kSwiGluColumns * kRows, activated[0]);
  for (int r = 0; r < rowCount; ++r) {
    float* out = group.output + static_cast<size_t>(first + r) * group.outputStride + columnOffset;
    if (epilogue == Epilogue::SwiGlu) {
      for (int j = 0; j < kSwiGluColumns; ++j) out[j] = activated[j][r];
    } else {
      const float scale = group.rowScale ? group.rowScale[first + r] : 1.0f;
      for (int j = 0; j < kPanelWidth; ++j) out[j] = sums[j][r] * scale;
    }
  }
}

// An item of quantized weights: kQuantRows rows at a time, the dot products of every weight row of the panel, then
// the epilogue (the same for every row count, so a row's results do not depend on the rows beside it).
void runQuantItem(const TileKernels& kernels, const GemmGroup& group, const WorkItem& item, Epilogue epilogue) {
  const PackedMatrix& weights = *group.weights;
  const size_t rowBytes = weights.rowBytes();
  const uint8_t* const panel = static_cast<const uint8_t*>(weights.panel(item.panel));
  const size_t columnOffset = static_cast<size_t>(item.panel) * epilogueColumns(epilogue);
  float sums[kPanelWidth][kQuantRows] = {};
  const float* rows[kQuantRows];
  QuantJob job{weights.quant(), nullptr, weights.k(), rows, 0, nullptr};
  for (int first = item.firstRow; first < item.firstRow + item.rowCount; first += kQuantRows) {
    job.rowCount = std::min(kQuantRows, item.firstRow + item.rowCount - first);
    for (int r = 0; r < job.rowCount; ++r) {
      const size_t row = group.inputRowIndex ? static_cast<size_t>(group.inputRowIndex[first + r]) : first + r;
      rows[r] = group.input + row * group.inputStride;
    }
    for (int column = 0; column < kPanelWidth; ++column) {
      job.weights = panel + column * rowBytes;
      job.out = sums[column];
      kernels.quantDot(job);
    }
    storeQuantRows(kernels, group, epilogue, sums, first, job.rowCount, columnOffset);
  }
  if (item.panel == 0 && group.rowsComputed) group.rowsComputed->fetch_add(item.rowCount, std::memory_order_relaxed);
}

// An item of quantized weights on the integer path: as runQuantItem, on the group's rows quantized to 8 bits.
void runQuantIntItem(const TileKernels& kernels, const StagedGroup& staged, const WorkItem& item, Epilogue epilogue) {
  const GemmGroup& group = staged.gemm;
  const PackedMatrix& weights = *group.weights;
  const size_t rowBytes = weights.rowBytes();
  const uint8_t* const panel = static_cast<const uint8_t*>(weights.panel(item.panel));
  const size_t columnOffset = static_cast<size_t>(item.panel) * epilogueColumns(epilogue);
  const QuantIntDotFn dot = quantIntDotFor(kernels.isa);
  float sums[kPanelWidth][kQuantIntRows] = {};
  const uint8_t* rows[kQuantIntRows];
  QuantIntJob job{weights.quant(), panel, rowBytes, kPanelWidth, weights.k(), rows, 0, sums[0]};
  for (int first = item.firstRow; first < item.firstRow + item.rowCount; first += kQuantIntRows) {
    job.rowCount = std::min(kQuantIntRows, item.firstRow + item.rowCount - first);
    for (int r = 0; r < job.rowCount; ++r) rows[r] = staged.quantRows + static_cast<size_t>(first + r) * staged.quantStride;
    dot(job);
    storeQuantRows(kernels, group, epilogue, sums, first, job.rowCount, columnOffset);
  }
  if (item.panel == 0 && group.rowsComputed) group.rowsComputed->fetch_add(item.rowCount, std::memory_order_relaxed);
}

void runItem(const TileKernels& kernels, const StagedGroup& staged, const WorkItem& item, Epilogue epilogue,
             ItemScratch& scratch) {
  const GemmGroup& group = staged.gemm;
  if (staged.quantRows != nullptr) return runQuantIntItem(kernels, staged, item, epilogue);
  if (group.weights->quantized()) return runQuantItem(kernels, group, item, epilogue);
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
  scratch.partial.resize(static_cast<size_t>(item.rowCount) * kPanelWidth);
  if (widenOnce) scratch.widened.resize(static_cast<size_t>(kSlice) * kPanelWidth);
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
        rows[r] = staged.roundedRows
                      ? static_cast<const void*>(staged.roundedRows + row * staged.roundedStride + kBegin)
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

// `groups` as the items read them, with the rows of every group that stagingFor() stages copied or rounded into
// `scratch` (in parallel blocks of rows, counted over all staged groups so a few small groups make one block).
std::vector<StagedGroup> stageRows(const std::vector<GemmGroup>& groups, const TileKernels& kernels,
                                   ScratchBuffers& scratch, AlignedBuffer& oversize) {
  std::vector<StagedGroup> staged(groups.size());
  std::vector<Staging> staging(groups.size());
  std::vector<size_t> offsets(groups.size());
  std::vector<int> firstStagedRow(groups.size() + 1);  // of each group, counted over the staged groups' rows
  size_t bytes = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GemmGroup& group = groups[g];
    staged[g].gemm = group;
    staging[g] = stagingFor(group, kernels);
    firstStagedRow[g + 1] = firstStagedRow[g] + (staging[g] == Staging::None ? 0 : group.rows);
    const int k = group.weights->k();
    if (staging[g] == Staging::Copy) {
      staged[g].gemm.inputStride = k + kStagedRowPad;
      staged[g].gemm.inputRowIndex = nullptr;
      offsets[g] = bytes;
      bytes += static_cast<size_t>(group.rows) * staged[g].gemm.inputStride * sizeof(float);
    } else if (staging[g] == Staging::RoundBf16) {
      staged[g].roundedStride = storedK(DType::BF16, k) + kRoundedRowPad;
      offsets[g] = bytes;
      bytes += static_cast<size_t>(group.rows) * staged[g].roundedStride * sizeof(uint16_t);
    } else if (staging[g] == Staging::Quantize8) {
      staged[g].actQuant = activationQuantFor(group.weights->quant());
      staged[g].quantStride = actRowBytes(staged[g].actQuant, k);
      offsets[g] = bytes;
      bytes += static_cast<size_t>(group.rows) * staged[g].quantStride;
    }
    bytes = (bytes + 63) / 64 * 64;
  }
  const int rows = firstStagedRow.back();
  if (rows == 0) return staged;
  char* const base = static_cast<char*>(scratch.get(ScratchSlot::StagedRows, bytes, oversize));
  for (size_t g = 0; g < groups.size(); ++g) {
    if (staging[g] == Staging::Copy) staged[g].gemm.input = reinterpret_cast<const float*>(base + offsets[g]);
    if (staging[g] == Staging::RoundBf16) staged[g].roundedRows = reinterpret_cast<const uint16_t*>(base + offsets[g]);
    if (staging[g] == Staging::Quantize8) staged[g].quantRows = reinterpret_cast<const uint8_t*>(base + offsets[g]);
  }
  const QuantizeRowFn quantizeRow = quantizeRowFor(kernels.isa);
  const size_t blocks = (static_cast<size_t>(rows) + kStagingRowBlock - 1) / kStagingRowBlock;
  cpuThreadPool().parallelFor(blocks, [&](size_t b) {
    const int begin = static_cast<int>(b) * kStagingRowBlock;
    const int end = std::min(rows, begin + kStagingRowBlock);
    size_t g = std::upper_bound(firstStagedRow.begin(), firstStagedRow.end(), begin) - firstStagedRow.begin() - 1;
    for (int at = begin; at < end; ++at) {
      while (at >= firstStagedRow[g + 1]) ++g;  // skips the groups with no staged rows
      const GemmGroup& from = groups[g];
      const int row = at - firstStagedRow[g];
      const size_t source = from.inputRowIndex ? static_cast<size_t>(from.inputRowIndex[row]) : row;
      const float* const input = from.input + source * from.inputStride;
      const int k = from.weights->k();
      if (staging[g] == Staging::Copy) {
        float* const copies = reinterpret_cast<float*>(base + offsets[g]);
        std::copy_n(input, k, copies + static_cast<size_t>(row) * staged[g].gemm.inputStride);
      } else if (staging[g] == Staging::Quantize8) {
        uint8_t* const quantized = reinterpret_cast<uint8_t*>(base + offsets[g]) + static_cast<size_t>(row) * staged[g].quantStride;
        quantizeRow(staged[g].actQuant, input, k, quantized);
      } else {
        kernels.roundRowBf16(input, k, reinterpret_cast<uint16_t*>(base + offsets[g]) + row * staged[g].roundedStride);
      }
    }
  });
  return staged;
}

}  // namespace

void runGroupedGemm(const std::vector<GemmGroup>& inputGroups, Epilogue epilogue, ScratchBuffers* scratch) {
  const TileKernels& kernels = activeTileKernels();  // one family for the whole job
  AlignedBuffer oversizeStaging;
  const std::vector<StagedGroup> groups =
      stageRows(inputGroups, kernels, scratch ? *scratch : threadScratchBuffers(), oversizeStaging);
  const std::vector<WorkItem> items = planItems(groups, kernels.maxRows);
  cpuThreadPool().parallelFor(items.size(), [&](size_t i) {
    thread_local ItemScratch scratch;
    runItem(kernels, groups[items[i].group], items[i], epilogue, scratch);
  });
}

}  // namespace dynamoe::cpu
