// Portable tile kernels: plain loops the compiler may auto-vectorise for the baseline target.
#include <cmath>

#include "tile_kernels.h"

namespace dynamoe::cpu {

namespace {

constexpr int kMaxRows = 4;

template <DType W, int MR>
void accumulate(const float* const* rows, const void* panel, int k, float (&acc)[MR][kPanelWidth]) {
  for (auto& row : acc) {
    for (float& v : row) v = 0.0f;
  }
  float w[kPanelWidth];
  for (int kk = 0; kk < k; ++kk) {
    const size_t base = static_cast<size_t>(kk) * kPanelWidth;
    for (int j = 0; j < kPanelWidth; ++j) w[j] = loadAsF32(panel, base + j, W);
    for (int r = 0; r < MR; ++r) {
      const float a = rows[r][kk];
      for (int j = 0; j < kPanelWidth; ++j) acc[r][j] += a * w[j];
    }
  }
}

template <DType W, int MR>
void swiGluTile(const float* const* rows, const void* panel, int k, float* const* out) {
  float acc[MR][kPanelWidth];
  accumulate<W, MR>(rows, panel, k, acc);
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < kSwiGluColumns; ++j) {
      const float gate = acc[r][j];
      out[r][j] = gate / (1.0f + std::exp(-gate)) * acc[r][kSwiGluColumns + j];
    }
  }
}

template <DType W, int MR>
void scaledTile(const float* const* rows, const void* panel, int k, const float* rowScale, float* const* out) {
  float acc[MR][kPanelWidth];
  accumulate<W, MR>(rows, panel, k, acc);
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < kPanelWidth; ++j) out[r][j] = acc[r][j] * rowScale[r];
  }
}

template <DType W>
void swiGlu(const float* const* rows, int rowCount, const void* panel, int k, float* const* out) {
  switch (rowCount) {
    case 1: return swiGluTile<W, 1>(rows, panel, k, out);
    case 2: return swiGluTile<W, 2>(rows, panel, k, out);
    case 3: return swiGluTile<W, 3>(rows, panel, k, out);
    default: return swiGluTile<W, 4>(rows, panel, k, out);
  }
}

template <DType W>
void scaled(const float* const* rows, int rowCount, const void* panel, int k, const float* rowScale,
            float* const* out) {
  switch (rowCount) {
    case 1: return scaledTile<W, 1>(rows, panel, k, rowScale, out);
    case 2: return scaledTile<W, 2>(rows, panel, k, rowScale, out);
    case 3: return scaledTile<W, 3>(rows, panel, k, rowScale, out);
    default: return scaledTile<W, 4>(rows, panel, k, rowScale, out);
  }
}

}  // namespace

const TileKernels& scalarTileKernels() {
  static const TileKernels kernels{
      Isa::Scalar,
      kMaxRows,
      {swiGlu<DType::F32>, swiGlu<DType::F16>, swiGlu<DType::BF16>},
      {scaled<DType::F32>, scaled<DType::F16>, scaled<DType::BF16>},
  };
  return kernels;
}

}  // namespace dynamoe::cpu
