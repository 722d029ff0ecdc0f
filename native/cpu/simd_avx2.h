// AVX2 + FMA + F16C register operations for the shared SIMD kernels (simd_tile.h). Include only from files
// compiled with -mavx2 -mfma -mf16c or the AVX-512 flags (which imply them); everything here has internal
// linkage so no other file can pick it up.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace dynamoe::cpu {
namespace {

struct Avx2 {
  using Reg = __m256;
  static constexpr int kLanes = 8;

  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float v) { return _mm256_set1_ps(v); }
  static Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  // kLanes pairs of bf16 values (2*kLanes values) widened exactly in one load and two integer ops: the first of
  // each pair shifted into the high half of its 32-bit lane, the second masked in place.
  static void loadBf16Pairs(const uint16_t* p, Reg& first, Reg& second) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    first = _mm256_castsi256_ps(_mm256_slli_epi32(bits, 16));
    second = _mm256_castsi256_ps(_mm256_and_si256(bits, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static Reg loadF16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm256_fnmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm256_min_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg roundNearest(Reg v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // y * 2^n for integral n in [-126, 128], built in the exponent bits.
  static Reg scaleByPow2(Reg y, Reg n) {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
  }
  // ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)): the order storeSums8 adds each register's lanes in, so a
  // dot product has the same bits whichever of the two finished it (batch invariance of attention scores).
  static float sum(Reg v) {
    const __m256 pairs = _mm256_hadd_ps(v, v);
    const __m256 quads = _mm256_hadd_ps(pairs, pairs);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1)));
  }
  // out[j] = sum of the lanes of v[j], for 8 registers at once.
  static void storeSums8(float* out, const Reg (&v)[8]) {
    // Each 128-bit half of a holds the sums of that half of v[0..3]; b the same for v[4..7].
    const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)));
  }
  static float first(Reg v) { return _mm256_cvtss_f32(v); }
};

}  // namespace
}  // namespace dynamoe::cpu
