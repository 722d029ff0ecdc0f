// AVX-512 tile kernels (only called when the CPU reports AVX-512 F/BW/VL/DQ). The kernel logic is shared with
// the AVX2 family (simd_tile.h); this file only picks the registers and the row count.
#include "simd_avx512.h"
#include "simd_attention.h"
#include "simd_quant.h"
#include "simd_tile.h"
#include "tile_family.h"

namespace dynamoe::cpu {

namespace {
constexpr int kMaxRows = 8;  // 8 rows x 2 registers = 16 accumulators of the 32 zmm registers

template <DType W, int MR>
using Tile = SimdTile<Avx512, W, MR>;
template <DType W>
using Widen = SimdWiden<Avx512, W>;
}  // namespace

const TileKernels& avx512TileKernels() {
  static const TileKernels kernels = tileFamily<Tile, Widen, kMaxRows>(Isa::Avx512, SimdAttend<Avx512>::run, SimdQuantDot<Avx512>::run,
                                                                       swiGluRows<Avx512>);
  return kernels;
}

}  // namespace dynamoe::cpu
