// The register-blocked inner kernels of the expert GEMMs, one family per instruction set (chosen at run time).
//
// Weights are packed in panels of kPanelWidth columns, K-major: panel[k][0..31]. A tile multiplies up to
// `maxRows` activation rows (f32, gathered through row pointers, so no permuted copy of x is made) by one panel
// over the full K and applies an epilogue:
//   - swiGlu: the panel holds 16 gate columns then 16 up columns; writes silu(gate) * up, 16 floats per row;
//   - scaled: writes rowScale[r] * (row . panel), 32 floats per row.
#pragma once

#include <cstddef>

#include "../dtype.h"
#include "cpu_features.h"

namespace dynamoe::cpu {

constexpr int kPanelWidth = 32;
constexpr int kSwiGluColumns = kPanelWidth / 2;  // intermediate columns produced per gate/up panel

using SwiGluTileFn = void (*)(const float* const* rows, int rowCount, const void* panel, int k, float* const* out);
using ScaledTileFn = void (*)(const float* const* rows, int rowCount, const void* panel, int k,
                              const float* rowScale, float* const* out);

struct TileKernels {
  Isa isa;
  int maxRows;
  SwiGluTileFn swiGlu[3];  // indexed by weight DType
  ScaledTileFn scaled[3];
};

inline int dtypeIndex(DType t) { return static_cast<int>(t); }

const TileKernels& scalarTileKernels();
#if defined(DYNAMOE_X86_KERNELS)
const TileKernels& avx2TileKernels();
const TileKernels& avx512TileKernels();
#endif

// The kernels in use (the best the CPU supports unless setActiveIsa() chose another).
const TileKernels& activeTileKernels();
// Throws ERR_DYNAMOE_TYPE when the CPU cannot run `isa`.
void setActiveIsa(Isa isa);

}  // namespace dynamoe::cpu
