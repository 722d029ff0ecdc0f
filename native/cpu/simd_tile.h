// The tile kernel and the panel widener written once over a SIMD register type V (simd_avx2.h,
// simd_avx512.h): MR rows x 32 columns of accumulators, kPanelWidth / V::kLanes registers per row.
// Internal linkage: each ISA file gets its own copy compiled with its own flags.
#pragma once

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

template <class V, DType W, int MR>
struct SimdTile {
  static void run(const TileJob& job) {
    constexpr int R = kRegsPerRow<V>;
    typename V::Reg acc[MR][R];
    const float* rowPtr[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      rowPtr[r] = job.rows[r];
#pragma GCC unroll 4
      for (int c = 0; c < R; ++c) {
        acc[r][c] = job.first ? V::zero() : V::load(job.partial + r * kPanelWidth + c * V::kLanes);
      }
    }
    // Locals, not job fields: lets the compiler keep every accumulator in a register across the loop.
    const void* const panel = job.panel;
    const int k = job.k;
    for (int kk = 0; kk < k; ++kk) {
      typename V::Reg b[R];
#pragma GCC unroll 4
      for (int c = 0; c < R; ++c) b[c] = loadPanel<V, W>(panel, static_cast<size_t>(kk), c);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const typename V::Reg a = V::broadcast(rowPtr[r] + kk);
#pragma GCC unroll 4
        for (int c = 0; c < R; ++c) acc[r][c] = V::fmadd(a, b[c], acc[r][c]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      if (!job.last) {
#pragma GCC unroll 4
        for (int c = 0; c < R; ++c) V::store(job.partial + r * kPanelWidth + c * V::kLanes, acc[r][c]);
      } else if (job.epilogue == Epilogue::SwiGlu) {
        // The first half of the registers holds gate columns, the second half the matching up columns.
#pragma GCC unroll 4
        for (int c = 0; c < R / 2; ++c) {
          V::store(job.out[r] + c * V::kLanes, V::mul(siluPs<V>(acc[r][c]), acc[r][c + R / 2]));
        }
      } else {
        const typename V::Reg s = V::set1(job.rowScale[r]);
#pragma GCC unroll 4
        for (int c = 0; c < R; ++c) V::store(job.out[r] + c * V::kLanes, V::mul(acc[r][c], s));
      }
    }
  }
};

template <class V, DType W>
struct SimdWiden {
  static void run(const void* panel, int k, float* out) {
    for (int kk = 0; kk < k; ++kk) {
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
