// The tile kernel for bf16 weights on CPUs with bf16 dot products, written once over a dot-product type D
// (simd_avx512bf16.h): D::F32 is the f32 register type of the accumulators and the epilogue, D::Pairs a register
// of bf16 pairs. The activation rows come rounded to bf16 (TileJob.rows, padded to whole pairs) and the panel holds
// k pairs (tile_kernels.h), so one dot-product instruction adds both k of a pair to each of its columns.
// Internal linkage: each ISA file gets its own copy compiled with its own flags.
#pragma once

#include "simd_tile.h"

namespace dynamoe::cpu {
namespace {

template <class D, int MR>
struct SimdDotTile {
  using V = typename D::F32;
  static constexpr int R = kRegsPerRow<V>;
  static constexpr int S = accumulatorSets(MR * R);

  // acc[r] += the dot products of row r's values 2*pair and 2*pair + 1 with panel rows 2*pair and 2*pair + 1.
  static inline void step(const void* panel, const uint16_t* const* rows, const char* prefetch,
                          size_t prefetchLines, int pair, typename V::Reg (&acc)[MR][R]) {
    const size_t kk = 2 * static_cast<size_t>(pair);
    fetchAhead<DType::BF16, MR>(panel, prefetch, prefetchLines, kk, 2);
    typename D::Pairs b[R];
#pragma GCC unroll 4
    for (int c = 0; c < R; ++c) b[c] = D::loadPairs(bf16PairsAt<V>(panel, kk, c));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const typename D::Pairs a = D::broadcastPair(rows[r] + kk);
#pragma GCC unroll 4
      for (int c = 0; c < R; ++c) acc[r][c] = D::dot(acc[r][c], a, b[c]);
    }
  }

  static void run(const TileJob& job) {
    typename V::Reg acc[S][MR][R];
    startSums<V, R, 0>(job, acc);
    const void* const panel = job.panel;
    const char* const prefetch = job.prefetch;
    const size_t prefetchLines = static_cast<size_t>(job.prefetchLines);
    const uint16_t* rows[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) rows[r] = static_cast<const uint16_t*>(job.rows[r]);
    // An odd K's last pair is whole too: the panel and the rounded rows are both padded with a zero.
    walkSteps<S>((job.k + 1) / 2, [&](int pair, int s) { step(panel, rows, prefetch, prefetchLines, pair, acc[s]); });
    finishSums<V, R, 0>(job, acc);
  }
};

}  // namespace
}  // namespace dynamoe::cpu
