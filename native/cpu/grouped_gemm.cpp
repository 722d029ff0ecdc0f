#include "grouped_gemm.h"

#include <algorithm>

#include "../thread_pool.h"

namespace dynamoe::cpu {

namespace {

constexpr int kMaxTileRows = 8;                  // the widest kernel family (AVX-512)
constexpr size_t kRowChunkBytes = 192 * 1024;    // activation rows of one work item stay in L2 across panels
constexpr int kMaxRowChunk = 256;

struct WorkItem {
  int group;
  int firstRow;
  int rowCount;
  int panel;
};

int rowChunkFor(int k, int tileRows) {
  const size_t fit = kRowChunkBytes / (static_cast<size_t>(k) * sizeof(float));
  const int rows = static_cast<int>(std::min<size_t>(kMaxRowChunk, std::max<size_t>(fit, 1)));
  return std::max(tileRows, rows / tileRows * tileRows);
}

// Row chunk outermost within a group, so consecutive items (taken by different threads) share activation rows.
std::vector<WorkItem> planItems(const std::vector<GemmGroup>& groups, int tileRows) {
  std::vector<WorkItem> items;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GemmGroup& group = groups[g];
    if (group.rows == 0) continue;
    const int chunk = rowChunkFor(group.weights->k(), tileRows);
    for (int first = 0; first < group.rows; first += chunk) {
      const int count = std::min(chunk, group.rows - first);
      for (int p = 0; p < group.weights->panels(); ++p) items.push_back({static_cast<int>(g), first, count, p});
    }
  }
  return items;
}

void runItem(const TileKernels& kernels, const GemmGroup& group, const WorkItem& item, Epilogue epilogue) {
  const PackedMatrix& weights = *group.weights;
  const int dt = dtypeIndex(weights.dtype());
  const void* panel = weights.panel(item.panel);
  const size_t columnOffset = static_cast<size_t>(item.panel) * epilogueColumns(epilogue);
  const float* rows[kMaxTileRows];
  float* out[kMaxTileRows];
  static const float kOnes[kMaxTileRows] = {1, 1, 1, 1, 1, 1, 1, 1};
  for (int first = item.firstRow; first < item.firstRow + item.rowCount; first += kernels.maxRows) {
    const int count = std::min(kernels.maxRows, item.firstRow + item.rowCount - first);
    for (int r = 0; r < count; ++r) {
      const int row = first + r;
      const size_t inputRow = group.inputRowIndex ? static_cast<size_t>(group.inputRowIndex[row]) : row;
      rows[r] = group.input + inputRow * group.inputStride;
      out[r] = group.output + static_cast<size_t>(row) * group.outputStride + columnOffset;
    }
    if (epilogue == Epilogue::SwiGlu) {
      kernels.swiGlu[dt](rows, count, panel, weights.k(), out);
    } else {
      const float* scale = group.rowScale ? group.rowScale + first : kOnes;
      kernels.scaled[dt](rows, count, panel, weights.k(), scale, out);
    }
  }
  if (item.panel == 0 && group.rowsComputed) group.rowsComputed->fetch_add(item.rowCount, std::memory_order_relaxed);
}

}  // namespace

void runGroupedGemm(const std::vector<GemmGroup>& groups, Epilogue epilogue) {
  const TileKernels& kernels = activeTileKernels();  // one family for the whole job
  const std::vector<WorkItem> items = planItems(groups, kernels.maxRows);
  cpuThreadPool().parallelFor(items.size(), [&](size_t i) {
    runItem(kernels, groups[items[i].group], items[i], epilogue);
  });
}

}  // namespace dynamoe::cpu
