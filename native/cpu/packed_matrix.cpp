#include "packed_matrix.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "thread_pool.h"

namespace dynamoe::cpu {

namespace {

constexpr int kKBlock = 16;  // source elements read per row before moving to the next row: one f32 cache line

template <DType Target>
inline void store(void* panel, size_t at, float value) {
  if constexpr (Target == DType::F32) static_cast<float*>(panel)[at] = value;
  if constexpr (Target == DType::F16) static_cast<uint16_t*>(panel)[at] = f32ToF16(value);
  if constexpr (Target == DType::BF16) static_cast<uint16_t*>(panel)[at] = f32ToBf16(value);
}

template <DType Source, DType Target>
inline void storeConverted(const void* source, size_t from, void* panel, size_t at) {
  if constexpr (Source == Target && Source != DType::F32) {
    static_cast<uint16_t*>(panel)[at] = static_cast<const uint16_t*>(source)[from];  // 16-bit data: copy the bits
  } else {
    store<Target>(panel, at, loadAsF32(source, from, Source));
  }
}

// Copies `count` source rows ([k] elements each, starting at `firstRow`) into panel columns
// [firstColumn, firstColumn + count), converting to the panel dtype. Blocked over k so reads stay sequential.
template <DType Source, DType Target>
void packRowsTyped(const void* source, size_t firstRow, int count, int k, void* panel, int firstColumn) {
  for (int kBegin = 0; kBegin < k; kBegin += kKBlock) {
    const int kEnd = std::min(k, kBegin + kKBlock);
    for (int j = 0; j < count; ++j) {
      const size_t rowStart = (firstRow + j) * static_cast<size_t>(k);
      for (int kk = kBegin; kk < kEnd; ++kk) {
        storeConverted<Source, Target>(source, rowStart + kk, panel,
                                       panelElementIndex(Target, static_cast<size_t>(kk), firstColumn + j));
      }
    }
  }
}

template <DType Target>
void packRowsTo(MatrixSource source, size_t firstRow, int count, int k, void* panel, int firstColumn) {
  switch (source.dtype) {
    case DType::F32: return packRowsTyped<DType::F32, Target>(source.data, firstRow, count, k, panel, firstColumn);
    case DType::F16: return packRowsTyped<DType::F16, Target>(source.data, firstRow, count, k, panel, firstColumn);
    case DType::BF16: return packRowsTyped<DType::BF16, Target>(source.data, firstRow, count, k, panel, firstColumn);
  }
}

// Quantized rows dequantized one at a time to f32, then packed as f32 rows are.
void packDequantizedRows(MatrixSource source, size_t firstRow, int count, int k, void* panel, DType target,
                         int firstColumn);

void packRows(MatrixSource source, size_t firstRow, int count, int k, void* panel, DType target, int firstColumn) {
  if (count <= 0) return;
  if (source.quant != QuantType::None) return packDequantizedRows(source, firstRow, count, k, panel, target, firstColumn);
  switch (target) {
    case DType::F32: return packRowsTo<DType::F32>(source, firstRow, count, k, panel, firstColumn);
    case DType::F16: return packRowsTo<DType::F16>(source, firstRow, count, k, panel, firstColumn);
    case DType::BF16: return packRowsTo<DType::BF16>(source, firstRow, count, k, panel, firstColumn);
  }
}

void packDequantizedRows(MatrixSource source, size_t firstRow, int count, int k, void* panel, DType target,
                         int firstColumn) {
  const size_t rowBytes = quantRowBytes(source.quant, k);
  std::vector<float> row(k);
  const MatrixSource floats{row.data(), DType::F32, QuantType::None};
  for (int j = 0; j < count; ++j) {
    dequantizeRow(source.quant, static_cast<const uint8_t*>(source.data) + (firstRow + j) * rowBytes, k, row.data());
    packRows(floats, 0, 1, k, panel, target, firstColumn + j);
  }
}

// Copies `count` quantized rows from `firstRow` to rows [firstColumn, firstColumn + count) of a quantized panel.
void copyQuantizedRows(MatrixSource source, size_t firstRow, int count, int k, void* panel, int firstColumn) {
  const size_t rowBytes = quantRowBytes(source.quant, k);
  if (count <= 0) return;
  std::memcpy(static_cast<char*>(panel) + firstColumn * rowBytes,
              static_cast<const char*>(source.data) + firstRow * rowBytes, count * rowBytes);
}

// Rows past the matrix's end stay zero bytes, which every type decodes to zeros.
PackedMatrix keepQuantized(MatrixSource source, int n, int k) {
  const int panels = (n + kPanelWidth - 1) / kPanelWidth;
  PackedMatrix packed(panels, k, source.quant);
  std::memset(packed.panel(0), 0, packed.bytes());
  cpuThreadPool().parallelFor(static_cast<size_t>(panels), [&](size_t p) {
    const int firstRow = static_cast<int>(p) * kPanelWidth;
    copyQuantizedRows(source, firstRow, std::min(kPanelWidth, n - firstRow), k, packed.panel(static_cast<int>(p)), 0);
  });
  return packed;
}

}  // namespace

PackedMatrix packColumns(MatrixSource source, int n, int k, DType target) {
  if (source.quant != QuantType::None) return keepQuantized(source, n, k);
  const int panels = (n + kPanelWidth - 1) / kPanelWidth;
  PackedMatrix packed(panels, k, target);
  cpuThreadPool().parallelFor(static_cast<size_t>(panels), [&](size_t p) {
    const int firstRow = static_cast<int>(p) * kPanelWidth;
    packRows(source, firstRow, std::min(kPanelWidth, n - firstRow), k, packed.panel(static_cast<int>(p)), target, 0);
  });
  return packed;
}

PackedMatrix packGateUp(MatrixSource gate, MatrixSource up, int ffn, int hidden, DType target) {
  const int panels = (ffn + kSwiGluColumns - 1) / kSwiGluColumns;
  if (gate.quant != QuantType::None && gate.quant == up.quant) {
    PackedMatrix packed(panels, hidden, gate.quant);
    std::memset(packed.panel(0), 0, packed.bytes());
    cpuThreadPool().parallelFor(static_cast<size_t>(panels), [&](size_t p) {
      const int firstRow = static_cast<int>(p) * kSwiGluColumns;
      const int count = std::min(kSwiGluColumns, ffn - firstRow);
      void* panel = packed.panel(static_cast<int>(p));
      copyQuantizedRows(gate, firstRow, count, hidden, panel, 0);
      copyQuantizedRows(up, firstRow, count, hidden, panel, kSwiGluColumns);
    });
    return packed;
  }
  PackedMatrix packed(panels, hidden, target);
  cpuThreadPool().parallelFor(static_cast<size_t>(panels), [&](size_t p) {
    const int firstRow = static_cast<int>(p) * kSwiGluColumns;
    const int count = std::min(kSwiGluColumns, ffn - firstRow);
    void* panel = packed.panel(static_cast<int>(p));
    packRows(gate, firstRow, count, hidden, panel, target, 0);
    packRows(up, firstRow, count, hidden, panel, target, kSwiGluColumns);
  });
  return packed;
}

}  // namespace dynamoe::cpu
