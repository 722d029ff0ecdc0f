// AVX512-BF16 dot products for the bf16 dot-product tile (simd_dot_tile.h). Include only from files compiled
// with the AVX-512 flags plus -mavx512bf16; everything here has internal linkage so no other file can pick it up.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "simd_avx512.h"

namespace dynamoe::cpu {
namespace {

// The two bf16 values at p as one 32-bit lane (memcpy: the rows are uint16_t, read without breaking aliasing rules).
inline int loadPair(const uint16_t* p) {
  int pair;
  std::memcpy(&pair, p, sizeof pair);
  return pair;
}

struct Avx512Bf16Dot {
  using F32 = Avx512;
  using Pairs = __m512bh;

  static Pairs loadPairs(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static Pairs broadcastPair(const uint16_t* p) { return (__m512bh)_mm512_set1_epi32(loadPair(p)); }
  // acc + a.odd * b.odd + a.even * b.even per 32-bit lane (vdpbf16ps: products exact, round to nearest even,
  // denormals treated as zero).
  static __m512 dot(__m512 acc, Pairs a, Pairs b) { return _mm512_dpbf16_ps(acc, a, b); }

  static void roundRow(const float* row, int k, uint16_t* out) {
    int i = 0;
    for (; i + 32 <= k; i += 32) {
      const __m512bh pairs = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + i + 16), _mm512_loadu_ps(row + i));
      _mm512_storeu_si512(out + i, (__m512i)pairs);
    }
    for (; i < k; i += 16) {
      const int n = k - i < 16 ? k - i : 16;
      const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1);  // masked-off lanes are neither read nor written
      const __m256bh values = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, row + i));
      _mm256_mask_storeu_epi16(out + i, mask, (__m256i)values);
    }
    if (k % 2 != 0) out[k] = 0;  // the pair partner of an odd K's last value
  }
};

}  // namespace
}  // namespace dynamoe::cpu
