// The tile kernel and the panel widener written once over a SIMD register type V (simd_avx2.h,
// simd_avx512.h): MR rows x 32 columns of accumulators, kPanelWidth / V::kLanes registers per row.
// Internal linkage: each ISA file gets its own copy compiled with its own flags.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "simd_math.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {
namespace {

template <class V>
constexpr int kRegsPerRow = kPanelWidth / V::kLanes;

// Register c of panel row kk, widened to f32.
template <class V, DType W>
inline typename V::Reg loadPanel(const void* panel, size_t kk, int c) {
  const size_t at = kk * kPanelWidth + static_cast<size_t>(c) * V::kLanes;
  if constexpr (W == DType::F32) return V::load(static_cast<const float*>(panel) + at);
  if constexpr (W == DType::BF16) return V::loadBf16(static_cast<const uint16_t*>(panel) + at);
  if constexpr (W == DType::F16) return V::loadF16(static_cast<const uint16_t*>(panel) + at);
}

// Bytes of 16-bit panel fetched ahead of use by small tiles, which stream their panel from memory: the hardware
// prefetcher alone left bf16 decode at 65% of read bandwidth. f32 decode was at 94% without it, and slower with it.
constexpr size_t kPrefetchBytes = 1536;

template <DType W>
inline void prefetchPanelRow(const void* panel, size_t kk) {
  if constexpr (W != DType::F32) {
    _mm_prefetch(static_cast<const char*>(panel) + kk * kPanelWidth * 2 + kPrefetchBytes, _MM_HINT_T0);
  }
}

// Independent FMA chains needed to keep both FMA pipes busy through the FMA latency.
constexpr int kFmaChains = 8;

template <class V, DType W, int MR>
struct SimdTile {
  static constexpr int R = kRegsPerRow<V>;
  // Accumulator sets taking alternate k: a tile of few rows has fewer than kFmaChains accumulators.
  static constexpr int S = MR * R >= kFmaChains ? 1 : kFmaChains / (MR * R);
  // bf16 registers split into even and odd columns (V::loadBf16EvenOdd): register 2j holds the even columns of
  // the j-th 2*kLanes columns, register 2j+1 the odd ones. Partial sums stay in that order; outputs are
  // re-interleaved once, in the epilogue.
  static constexpr bool kEvenOdd = W == DType::BF16 && V::kBf16EvenOdd;

  // acc[r] += row r [kk] * panel row kk; also fetches line kk of the job's prefetch range, if any.
  static inline void step(const void* panel, const float* const* rowPtr, const char* prefetch, int kk,
                          typename V::Reg (&acc)[MR][R]) {
    typename V::Reg b[R];
    if (prefetch) _mm_prefetch(prefetch + static_cast<size_t>(kk) * 64, _MM_HINT_T0);
    if constexpr (MR <= 2) prefetchPanelRow<W>(panel, static_cast<size_t>(kk));
    if constexpr (kEvenOdd) {
      const uint16_t* row = static_cast<const uint16_t*>(panel) + static_cast<size_t>(kk) * kPanelWidth;
#pragma GCC unroll 4
      for (int c = 0; c < R; c += 2) V::loadBf16EvenOdd(row + c * V::kLanes, b[c], b[c + 1]);
    } else {
#pragma GCC unroll 4
      for (int c = 0; c < R; ++c) b[c] = loadPanel<V, W>(panel, static_cast<size_t>(kk), c);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const typename V::Reg a = V::broadcast(rowPtr[r] + kk);
#pragma GCC unroll 4
      for (int c = 0; c < R; ++c) acc[r][c] = V::fmadd(a, b[c], acc[r][c]);
    }
  }

  static void run(const TileJob& job) {
    typename V::Reg acc[S][MR][R];
    const float* rowPtr[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      rowPtr[r] = job.rows[r];
#pragma GCC unroll 4
      for (int c = 0; c < R; ++c) {
        acc[0][r][c] = job.first ? V::zero() : V::load(job.partial + r * kPanelWidth + c * V::kLanes);
#pragma GCC unroll 4
        for (int s = 1; s < S; ++s) acc[s][r][c] = V::zero();
      }
    }
    // Locals, not job fields: lets the compiler keep every accumulator in a register across the loop.
    const void* const panel = job.panel;
    const int k = job.k;
    int kk = 0;
    const char* const prefetch = job.prefetch;
    for (; kk + S <= k; kk += S) {
#pragma GCC unroll 4
      for (int s = 0; s < S; ++s) step(panel, rowPtr, prefetch, kk + s, acc[s]);
    }
    for (; kk < k; ++kk) step(panel, rowPtr, prefetch, kk, acc[0]);
#pragma GCC unroll 4
    for (int s = 1; s < S; ++s) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
        for (int c = 0; c < R; ++c) acc[0][r][c] = V::add(acc[0][r][c], acc[s][r][c]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      if (!job.last) {
#pragma GCC unroll 4
        for (int c = 0; c < R; ++c) V::store(job.partial + r * kPanelWidth + c * V::kLanes, acc[0][r][c]);
      } else if (job.epilogue == Epilogue::SwiGlu) {
        // The first half of the registers holds gate columns, the second half the matching up columns.
        if constexpr (kEvenOdd) {
#pragma GCC unroll 4
          for (int c = 0; c < R / 2; c += 2) {
            V::storeInterleaved(job.out[r] + c * V::kLanes, V::mul(siluPs<V>(acc[0][r][c]), acc[0][r][c + R / 2]),
                                V::mul(siluPs<V>(acc[0][r][c + 1]), acc[0][r][c + 1 + R / 2]));
          }
        } else {
#pragma GCC unroll 4
          for (int c = 0; c < R / 2; ++c) {
            V::store(job.out[r] + c * V::kLanes, V::mul(siluPs<V>(acc[0][r][c]), acc[0][r][c + R / 2]));
          }
        }
      } else {
        const typename V::Reg s = V::set1(job.rowScale[r]);
        if constexpr (kEvenOdd) {
#pragma GCC unroll 4
          for (int c = 0; c < R; c += 2) {
            V::storeInterleaved(job.out[r] + c * V::kLanes, V::mul(acc[0][r][c], s), V::mul(acc[0][r][c + 1], s));
          }
        } else {
#pragma GCC unroll 4
          for (int c = 0; c < R; ++c) V::store(job.out[r] + c * V::kLanes, V::mul(acc[0][r][c], s));
        }
      }
    }
  }
};

template <class V, DType W>
struct SimdWiden {
  static void run(const void* panel, int k, float* out) {
    for (int kk = 0; kk < k; ++kk) {
      prefetchPanelRow<W>(panel, static_cast<size_t>(kk));
      for (int c = 0; c < kRegsPerRow<V>; ++c) {
        V::store(out + static_cast<size_t>(kk) * kPanelWidth + c * V::kLanes,
                 loadPanel<V, W>(panel, static_cast<size_t>(kk), c));
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
