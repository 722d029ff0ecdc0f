// AVX2 + FMA + F16C tile kernels (only called when the CPU reports AVX2 and FMA).
#include "simd_avx2.h"
#include "simd_attention.h"
#include "simd_quant.h"
#include "simd_tile.h"
#include "tile_family.h"

namespace dynamoe::cpu {

namespace {
// Up to 3 rows take a row's 4 registers in one pass (12 accumulators). Tiles of 4-6 rows take 2 registers per row
// in two column passes: 12 accumulators, 2 panel registers and a broadcast, so the panel is not reloaded per row
// (a 6-row tile ran at 88-89% of the FMA peak on an L1-resident panel where 3 rows x 4 registers ran at 79%).
// The 3-row tiles are also the streaming ones (grouped_gemm.cpp): only items of many rows run 2-pass tiles, on K
// slices, and 16-bit slices are widened first (the bf16 pairs would need 4 panel registers).
constexpr int kMaxRows = 6;
constexpr int kMaxStreamingRows = 3;

template <DType W, int MR>
using Tile = SimdTile<Avx2, W, MR, MR <= kMaxStreamingRows ? 4 : 2>;
template <DType W>
using Widen = SimdWiden<Avx2, W>;
}  // namespace

const TileKernels& avx2TileKernels() {
  static const TileKernels kernels =
      tileFamily<Tile, Widen, kMaxRows, kMaxStreamingRows>(Isa::Avx2, SimdAttend<Avx2>::run, SimdQuantDot<Avx2>::run,
                                                           swiGluRows<Avx2>);
  return kernels;
}

}  // namespace dynamoe::cpu
