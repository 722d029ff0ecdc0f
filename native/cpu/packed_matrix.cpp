#include "packed_matrix.h"

#include "../thread_pool.h"

namespace dynamoe::cpu {

namespace {

// Copies source row `row` ([k] elements) into column `column` of a [k][32] panel, converting to the panel dtype.
void packRow(MatrixSource source, size_t row, int k, void* panel, DType target, int column) {
  const size_t first = row * static_cast<size_t>(k);
  for (int kk = 0; kk < k; ++kk) {
    const float value = loadAsF32(source.data, first + kk, source.dtype);
    const size_t at = static_cast<size_t>(kk) * kPanelWidth + column;
    switch (target) {
      case DType::F32: static_cast<float*>(panel)[at] = value; break;
      case DType::F16: static_cast<uint16_t*>(panel)[at] = f32ToF16(value); break;
      case DType::BF16: static_cast<uint16_t*>(panel)[at] = f32ToBf16(value); break;
    }
  }
}

}  // namespace

PackedMatrix packColumns(MatrixSource source, int n, int k, DType target) {
  const int panels = (n + kPanelWidth - 1) / kPanelWidth;
  PackedMatrix packed(panels, k, target);
  cpuThreadPool().parallelFor(static_cast<size_t>(panels), [&](size_t p) {
    for (int j = 0; j < kPanelWidth; ++j) {
      const int row = static_cast<int>(p) * kPanelWidth + j;
      if (row < n) packRow(source, static_cast<size_t>(row), k, packed.panel(static_cast<int>(p)), target, j);
    }
  });
  return packed;
}

PackedMatrix packGateUp(MatrixSource gate, MatrixSource up, int ffn, int hidden, DType target) {
  const int panels = (ffn + kSwiGluColumns - 1) / kSwiGluColumns;
  PackedMatrix packed(panels, hidden, target);
  cpuThreadPool().parallelFor(static_cast<size_t>(panels), [&](size_t p) {
    void* panel = packed.panel(static_cast<int>(p));
    for (int j = 0; j < kSwiGluColumns; ++j) {
      const int row = static_cast<int>(p) * kSwiGluColumns + j;
      if (row >= ffn) break;
      packRow(gate, static_cast<size_t>(row), hidden, panel, target, j);
      packRow(up, static_cast<size_t>(row), hidden, panel, target, kSwiGluColumns + j);
    }
  });
  return packed;
}

}  // namespace dynamoe::cpu
