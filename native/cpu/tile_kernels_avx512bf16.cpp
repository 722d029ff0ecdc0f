// AVX-512 tile kernels with AVX512-BF16 dot products for bf16 weights (only called when the CPU reports
// AVX512_BF16 as well as AVX-512 F/BW/VL/DQ; the default where those outrun the FMAs, see bestIsa). The bf16 tiles
// round the activations to bf16, a different accuracy contract from the other families' exact widening. f32 and
// f16 weights use the AVX-512 family's tiles.
#include "simd_attention.h"
#include "simd_quant.h"
#include "simd_avx512bf16.h"
#include "simd_dot_tile.h"
#include "tile_family.h"

#include <type_traits>

namespace dynamoe::cpu {

namespace {
constexpr int kMaxRows = 8;  // 8 rows x 2 registers = 16 accumulators of the 32 zmm registers

template <DType W, int MR>
using Tile = std::conditional_t<W == DType::BF16, SimdDotTile<Avx512Bf16Dot, MR>, SimdTile<Avx512, W, MR>>;

template <DType W>
struct Widen {
  static constexpr WidenFn run = W == DType::F16 ? SimdWiden<Avx512, DType::F16>::run : nullptr;
};
}  // namespace

const TileKernels& avx512Bf16TileKernels() {
  static const TileKernels kernels =
      tileFamily<Tile, Widen, kMaxRows>(Isa::Avx512Bf16, SimdAttend<Avx512>::run, SimdQuantDot<Avx512>::run,
                                        swiGluRows<Avx512>, Avx512Bf16Dot::roundRow);
  return kernels;
}

}  // namespace dynamoe::cpu
