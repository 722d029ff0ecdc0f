// The tile kernel and the panel widener written once over a SIMD register type V (simd_avx2.h,
// simd_avx512.h): MR rows x 32 columns of accumulators, kPanelWidth / V::kLanes registers per row.
// Internal linkage: each ISA file gets its own copy compiled with its own flags.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <utility>

#include "simd_math.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {
namespace {

template <class V>
constexpr int kRegsPerRow = kPanelWidth / V::kLanes;

// Register c of f32 or f16 panel row kk, widened to f32 (bf16 panels are read in k pairs: V::loadBf16Pairs).
template <class V, DType W>
inline typename V::Reg loadPanel(const void* panel, size_t kk, int c) {
  const size_t at = kk * kPanelWidth + static_cast<size_t>(c) * V::kLanes;
  if constexpr (W == DType::F32) return V::load(static_cast<const float*>(panel) + at);
  if constexpr (W == DType::F16) return V::loadF16(static_cast<const uint16_t*>(panel) + at);
}

// Where register c of bf16 panel rows kk and kk + 1 (kk even) starts: kLanes columns of k pairs.
template <class V>
inline const uint16_t* bf16PairsAt(const void* panel, size_t kk, int c) {
  return static_cast<const uint16_t*>(panel) + kk * kPanelWidth + 2 * static_cast<size_t>(c) * V::kLanes;
}

// Registers c of bf16 panel rows kk and kk + 1 (kk even), widened to f32.
template <class V>
inline void loadBf16PanelPair(const void* panel, size_t kk, int c, typename V::Reg& first, typename V::Reg& second) {
  V::loadBf16Pairs(bf16PairsAt<V>(panel, kk, c), first, second);
}

// Bytes of 16-bit panel fetched ahead of use by small tiles, which stream their panel from memory: the hardware
// prefetcher alone left bf16 decode at 65% of read bandwidth. f32 decode was at 94% without it, and slower with it.
// Into L2, 3 KiB ahead: on Zen 4 that streamed a decode step's two experts at 24-30 GB/s, against 20-28 GB/s for
// 1.5 KiB into L1 (each tile walks 4 streams: 4 x 24 lines in flight into L1 is likely more than its fill buffers
// take).
constexpr size_t kPrefetchBytes = 3072;

template <DType W>
inline void prefetchPanelRow(const void* panel, size_t kk) {
  if constexpr (W != DType::F32) {
    _mm_prefetch(static_cast<const char*>(panel) + kk * kPanelWidth * 2 + kPrefetchBytes, _MM_HINT_T1);
  }
}

// Tiles of this many rows or fewer mostly stream their panel from memory: they are the only tile of a work item
// of few rows (decode, small batches), so nothing keeps the panel in L1 for them.
constexpr int kStreamingRows = 4;

// Fetches lines kk .. kk + count - 1 of a job's prefetch range (those below prefetchLines) into L2 and, for
// streaming tiles, the 16-bit panel rows kPrefetchBytes ahead (into L2 too). The range is the next K slice: into
// L1 it evicted parts of the slice in use (two 16 KiB slices fill a 32 KiB L1 before any row or partial sum), and
// items of few rows per slice paid for it (bf16 dot tiles at 36 rows per expert: 285 -> 310-330 GFLOP/s into L2).
template <DType W, int MR>
inline void fetchAhead(const void* panel, const char* prefetch, size_t prefetchLines, size_t kk, int count) {
  for (int i = 0; i < count; ++i) {
    if (kk + i < prefetchLines) _mm_prefetch(prefetch + (kk + i) * 64, _MM_HINT_T1);
    if constexpr (MR <= kStreamingRows) prefetchPanelRow<W>(panel, kk + i);
  }
}

// Accumulator sets of a tile: always one, so every output element adds its K products in k order whatever the
// tile's row count, and a row's bits do not depend on how many rows share its step (batch invariance). Several
// sets over parts of K kept more misses in flight for tiles of 1-2 rows, but made a decode row's sum differ from
// the same row's sum in a prefill tile.
constexpr int accumulatorSets(int) { return 1; }

// Calls step(i, s) for steps i in [0, steps), set s walking its own contiguous part of the range: a small tile
// streams its panel from memory, and several streams per core keep more misses in flight than one (bf16 decode
// ran ~6% faster than with sets over alternate k). Leftover steps go to set 0.
// (The sets are expanded at compile time: an unroll pragma on a loop over them is not always honoured.)
template <int S, class Step, int... Set>
inline void walkSteps(int steps, Step&& step, std::integer_sequence<int, Set...>) {
  const int span = steps / S;
  for (int i = 0; i < span; ++i) (step(Set * span + i, Set), ...);
  for (int i = S * span; i < steps; ++i) step(i, 0);
}

template <int S, class Step>
inline void walkSteps(int steps, Step&& step) {
  walkSteps<S>(steps, step, std::make_integer_sequence<int, S>{});
}

// Register j of a row in column pass p of a tile that splits each row's R registers over R / RP passes: pass p
// takes registers p, p + passes, ... so that with the SwiGLU epilogue every pass holds gate registers (j < RP / 2)
// and their up registers (j + RP / 2) together.
template <int R, int RP>
constexpr int passRegister(int p, int j) {
  return p + j * (R / RP);
}

// The accumulators of column pass P at the start of the job's K range: the running sums of earlier ranges in set 0
// (zeros for the first range), zeros in the other sets.
template <class V, int R, int P, int S, int MR, int RP>
inline void startSums(const TileJob& job, typename V::Reg (&acc)[S][MR][RP]) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < RP; ++j) {
      const int c = passRegister<R, RP>(P, j);
      acc[0][r][j] = job.first ? V::zero() : V::load(job.partial + r * kPanelWidth + c * V::kLanes);
#pragma GCC unroll 4
      for (int s = 1; s < S; ++s) acc[s][r][j] = V::zero();
    }
  }
}

// Adds the accumulator sets of column pass P, then stores the running sums (before the last K range) or applies the
// epilogue.
template <class V, int R, int P, int S, int MR, int RP>
inline void finishSums(const TileJob& job, typename V::Reg (&acc)[S][MR][RP]) {
#pragma GCC unroll 4
  for (int s = 1; s < S; ++s) {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < RP; ++j) acc[0][r][j] = V::add(acc[0][r][j], acc[s][r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    if (!job.last) {
#pragma GCC unroll 4
      for (int j = 0; j < RP; ++j) {
        V::store(job.partial + r * kPanelWidth + passRegister<R, RP>(P, j) * V::kLanes, acc[0][r][j]);
      }
    } else if (job.epilogue == Epilogue::SwiGlu) {
      // The first half of a row's registers holds gate columns, the second half the matching up columns.
#pragma GCC unroll 4
      for (int j = 0; j < RP / 2; ++j) {
        V::store(job.out[r] + passRegister<R, RP>(P, j) * V::kLanes,
                 V::mul(siluPs<V>(acc[0][r][j]), acc[0][r][j + RP / 2]));
      }
    } else {
      const typename V::Reg scale = V::set1(job.rowScale[r]);
#pragma GCC unroll 4
      for (int j = 0; j < RP; ++j) {
        V::store(job.out[r] + passRegister<R, RP>(P, j) * V::kLanes, V::mul(acc[0][r][j], scale));
      }
    }
  }
}

// MR rows x 32 columns. Each row's R registers are taken RP at a time, in R / RP column passes over the K range
// (a K slice, which the later passes find in L1): a family with few registers keeps more rows per tile that way
// (AVX2: 6 rows x 2 registers = 12 accumulators, 2 panel registers and a broadcast in 16 ymm registers, instead of
// 3 rows x 4 registers that leave no room for the fourth panel register).
template <class V, DType W, int MR, int RP = kRegsPerRow<V>>
struct SimdTile {
  static constexpr int R = kRegsPerRow<V>;
  static constexpr int kPasses = R / RP;
  static_assert(kPasses * RP == R && (RP % 2 == 0 || kPasses == 1), "a pass holds whole gate / up register pairs");
  static constexpr int S = accumulatorSets(MR * RP);
  // Panel rows per step: bf16 panels come in k pairs (one load widens both rows).
  static constexpr int kStepRows = storesKPairs(W) ? 2 : 1;

  // acc[r] += row r [kk + i] * column pass P of panel row kk + i, for i < Rows; the first pass also fetches the
  // job's prefetch lines of those k.
  template <int P, int Rows>
  static inline void step(const void* panel, const float* const* rowPtr, const char* prefetch, size_t prefetchLines,
                          int kk, typename V::Reg (&acc)[MR][RP]) {
    typename V::Reg b[kStepRows][RP];
    if constexpr (P == 0) fetchAhead<W, MR>(panel, prefetch, prefetchLines, static_cast<size_t>(kk), Rows);
#pragma GCC unroll 4
    for (int j = 0; j < RP; ++j) {
      const int c = passRegister<R, RP>(P, j);
      if constexpr (storesKPairs(W)) {
        loadBf16PanelPair<V>(panel, static_cast<size_t>(kk), c, b[0][j], b[kStepRows - 1][j]);
      } else {
        b[0][j] = loadPanel<V, W>(panel, static_cast<size_t>(kk), c);
      }
    }
#pragma GCC unroll 2
    for (int i = 0; i < Rows; ++i) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const typename V::Reg a = V::broadcast(rowPtr[r] + kk + i);
#pragma GCC unroll 4
        for (int j = 0; j < RP; ++j) acc[r][j] = V::fmadd(a, b[i][j], acc[r][j]);
      }
    }
  }

  // Column pass P over the job's K range.
  template <int P>
  static inline void pass(const TileJob& job, const float* const* rowPtr) {
    typename V::Reg acc[S][MR][RP];
    startSums<V, R, P>(job, acc);
    // Locals, not job fields: lets the compiler keep every accumulator in a register across the loop.
    const void* const panel = job.panel;
    const char* const prefetch = job.prefetch;
    const size_t prefetchLines = static_cast<size_t>(job.prefetchLines);
    const int k = job.k;
    walkSteps<S>(k / kStepRows, [&](int i, int s) {
      step<P, kStepRows>(panel, rowPtr, prefetch, prefetchLines, i * kStepRows, acc[s]);
    });
    // The odd last k of a bf16 panel: its pair partner is padding, and past the end of the activation rows.
    if (k % kStepRows != 0) step<P, 1>(panel, rowPtr, prefetch, prefetchLines, k - 1, acc[0]);
    finishSums<V, R, P>(job, acc);
  }

  template <int... P>
  static inline void passes(const TileJob& job, const float* const* rowPtr, std::integer_sequence<int, P...>) {
    (pass<P>(job, rowPtr), ...);
  }

  static void run(const TileJob& job) {
    const float* rowPtr[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) rowPtr[r] = static_cast<const float*>(job.rows[r]);
    passes(job, rowPtr, std::make_integer_sequence<int, kPasses>{});
  }
};

template <class V, DType W>
struct SimdWiden {
  static void run(const void* panel, int k, float* out) {
    if constexpr (storesKPairs(W)) {
      for (int kk = 0; kk < k; kk += 2) {
        prefetchPanelRow<W>(panel, static_cast<size_t>(kk));
        prefetchPanelRow<W>(panel, static_cast<size_t>(kk + 1));
        float* first = out + static_cast<size_t>(kk) * kPanelWidth;
        for (int c = 0; c < kRegsPerRow<V>; ++c) {
          typename V::Reg a, b;
          loadBf16PanelPair<V>(panel, static_cast<size_t>(kk), c, a, b);
          V::store(first + c * V::kLanes, a);
          if (kk + 1 < k) V::store(first + kPanelWidth + c * V::kLanes, b);  // an odd K's last pair is padding
        }
      }
    } else {
      for (int kk = 0; kk < k; ++kk) {
        prefetchPanelRow<W>(panel, static_cast<size_t>(kk));
        for (int c = 0; c < kRegsPerRow<V>; ++c) {
          V::store(out + static_cast<size_t>(kk) * kPanelWidth + c * V::kLanes,
                   loadPanel<V, W>(panel, static_cast<size_t>(kk), c));
        }
      }
    }
  }
};

// fp32 FMA throughput probe: 12 independent chains for `iterations` rounds; returns the flops performed.
template <class V>
double simdFmaProbe(long iterations) {
  typename V::Reg acc[12];
  const typename V::Reg m = V::set1(1.0000001f);
  const typename V::Reg c = V::set1(1e-7f);
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) acc[j] = V::set1(static_cast<float>(j));
  for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) acc[j] = V::fmadd(acc[j], m, c);
  }
  typename V::Reg sum = acc[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; ++j) sum = V::add(sum, acc[j]);
  volatile float sink = V::first(sum);
  (void)sink;
  return 2.0 * V::kLanes * 12 * static_cast<double>(iterations);
}

}  // namespace
}  // namespace dynamoe::cpu
