// AVX2 + FMA + F16C tile kernels (only called when the CPU reports AVX2 and FMA).
#include "simd_avx2.h"
#include "simd_attention.h"
#include "simd_tile.h"
#include "tile_family.h"

namespace dynamoe::cpu {

namespace {
constexpr int kMaxRows = 3;  // 3 rows x 4 registers = 12 accumulators of the 16 ymm registers

template <DType W, int MR>
using Tile = SimdTile<Avx2, W, MR>;
template <DType W>
using Widen = SimdWiden<Avx2, W>;
}  // namespace

const TileKernels& avx2TileKernels() {
  static const TileKernels kernels = tileFamily<Tile, Widen, kMaxRows>(Isa::Avx2, SimdAttend<Avx2>::run);
  return kernels;
}

}  // namespace dynamoe::cpu
