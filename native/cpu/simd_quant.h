// Dot products of quantized weight rows with f32 activation rows over a SIMD register type V (simd_avx2.h,
// simd_avx512.h): each block is dequantized once into L1 (compiled with the family's flags, so its loops
// vectorize), then every activation row takes it register by register. A row's lanes add k = lane (mod kLanes) in
// order and are summed in the family's one order at the end, whatever the number of rows.
// Internal linkage: each ISA file gets its own copy.
#pragma once

#include <utility>

#include "../core/quant.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {
namespace {

template <class V>
struct SimdQuantDot {
  using Reg = typename V::Reg;
  static constexpr int L = V::kLanes;

  template <int R>
  static void rows(const QuantJob& job) {
    const QuantTraits traits = quantTraits(job.type);
    alignas(64) float block[256];
    Reg acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = V::zero();
    const uint8_t* weights = job.weights;
    for (int c = 0; c < job.k; c += traits.blockElements, weights += traits.blockBytes) {
      dequantizeBlock(job.type, weights, block);
      for (int i = 0; i < traits.blockElements; i += L) {
        const Reg w = V::load(block + i);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r] = V::fmadd(w, V::load(job.rows[r] + c + i), acc[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) job.out[r] = V::sum(acc[r]);
  }

  template <size_t... Index>
  static void byRows(const QuantJob& job, std::index_sequence<Index...>) {
    static constexpr QuantDotFn table[] = {&rows<static_cast<int>(Index) + 1>...};
    table[job.rowCount - 1](job);
  }

  static void run(const QuantJob& job) { byRows(job, std::make_index_sequence<kQuantRows>{}); }
};

}  // namespace
}  // namespace dynamoe::cpu
