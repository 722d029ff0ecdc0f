// AVX-512 (F) register operations for the shared SIMD kernels (simd_tile.h). Include only from files compiled
// with the AVX-512 flags; everything here has internal linkage so no other file can pick it up.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "simd_avx2.h"  // storeSums8 finishes on 256-bit registers

namespace dynamoe::cpu {
namespace {

struct Avx512 {
  using Reg = __m512;
  static constexpr int kLanes = 16;

  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float v) { return _mm512_set1_ps(v); }
  static Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  // kLanes pairs of bf16 values widened exactly: the first of each pair shifted up, the second masked in place.
  static void loadBf16Pairs(const uint16_t* p, Reg& first, Reg& second) {
    const __m512i bits = _mm512_loadu_si512(p);
    first = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
    second = _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static Reg loadF16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm512_fnmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm512_min_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg roundNearest(Reg v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Reg scaleByPow2(Reg y, Reg n) { return _mm512_scalef_ps(y, n); }  // y * 2^n
  // Halves added, then the AVX2 order: the same as storeSums8 (batch invariance of attention scores).
  static float sum(Reg v) { return Avx2::sum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1))); }
  // out[j] = sum of the lanes of v[j], for 8 registers at once: halves added, then the AVX2 transpose-add.
  static void storeSums8(float* out, const Reg (&v)[8]) {
    __m256 halves[8];
    for (int j = 0; j < 8; ++j) {
      halves[j] = _mm256_add_ps(_mm512_castps512_ps256(v[j]), _mm512_extractf32x8_ps(v[j], 1));
    }
    Avx2::storeSums8(out, halves);
  }
  static float first(Reg v) { return _mm512_cvtss_f32(v); }
};

}  // namespace
}  // namespace dynamoe::cpu
