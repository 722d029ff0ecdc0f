// The integer quantized dot products with AVX512-VNNI on 512-bit registers (vpdpbusd, vpdpwssd); only called when
// the CPU reports AVX512_VNNI with AVX-512 F/BW/VL/DQ.
#include "simd_quant_int.h"

#include <limits>

namespace dynamoe::cpu {

void quantIntDotAvx512Vnni(const QuantIntJob& job) { QuantInt512::run(job); }

// quantizeActivationRow 16 values at a time: the same f32 operations in each lane, so the same bytes. Blocks with a
// value that is not finite go to the scalar code.
void quantizeActivationRowAvx512(ActQuant a, const float* x, int k, uint8_t* out) {
  const int n = actBlockElements(a);
  const int chunks = n / 16;
  int8_t* qs = reinterpret_cast<int8_t*>(out);
  float* scales = reinterpret_cast<float*>(out + actScalesOffset(k));
  int16_t* sums = reinterpret_cast<int16_t*>(out + actSumsOffset(a, k));
  const __m512 largest = _mm512_set1_ps(std::numeric_limits<float>::max());
  for (int b = 0; b < k / n; ++b) {
    const float* xb = x + static_cast<size_t>(b) * n;
    __m512 amaxes = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int c = 0; c < chunks; ++c) {
      const __m512 ax = _mm512_abs_ps(_mm512_loadu_ps(xb + 16 * c));
      bad |= _mm512_cmp_ps_mask(ax, largest, _CMP_NLE_UQ);
      amaxes = _mm512_max_ps(amaxes, ax);
    }
    if (bad != 0) {
      // Rare: quantize the block alone through the scalar code (a one-block row of its own).
      alignas(64) uint8_t one[320 + 64];
      quantizeActivationRow(a, xb, n, one);
      std::memcpy(qs + static_cast<size_t>(b) * n, one, n);
      std::memcpy(scales + b, one + actScalesOffset(n), sizeof(float));
      if (a == ActQuant::Q8_K) std::memcpy(sums + 16 * b, one + actSumsOffset(a, n), 32);
      continue;
    }
    const float amax = _mm512_reduce_max_ps(amaxes);
    int8_t* qb = qs + static_cast<size_t>(b) * n;
    float d;
    if (a == ActQuant::Q8_0) {
      d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      const __m512 scale = _mm512_set1_ps(id);
      for (int c = 0; c < chunks; ++c) {
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(xb + 16 * c), scale);
        __m512i t = _mm512_cvttps_epi32(v);
        const __m512 fraction = _mm512_sub_ps(v, _mm512_cvtepi32_ps(t));
        t = _mm512_mask_add_epi32(t, _mm512_cmp_ps_mask(fraction, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, _mm512_set1_epi32(1));
        t = _mm512_mask_sub_epi32(t, _mm512_cmp_ps_mask(fraction, _mm512_set1_ps(-0.5f), _CMP_LE_OQ), t, _mm512_set1_epi32(1));
        t = _mm512_add_epi32(t, _mm512_set1_epi32(128));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16 * c), _mm512_cvtepi32_epi8(t));
      }
    } else if (amax == 0.0f) {
      d = 0.0f;
      std::memset(qb, 0, n);
      std::memset(sums + 16 * b, 0, 32);
    } else {
      float max = 0.0f;  // the first value of largest magnitude
      for (int c = 0; c < chunks; ++c) {
        const __mmask16 at = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xb + 16 * c)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
        if (at != 0) {
          max = xb[16 * c + __builtin_ctz(at)];
          break;
        }
      }
      const float iscale = -127.0f / max;
      const __m512 scale = _mm512_set1_ps(iscale);
      for (int c = 0; c < chunks; ++c) {
        const __m512 shifted = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * c), scale), _mm512_set1_ps(12582912.0f));
        __m512i q = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x007fffff)),
                                     _mm512_set1_epi32(0x00400000));
        q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16 * c), _mm512_cvtepi32_epi8(q));
        sums[16 * b + c] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
      }
      d = 1.0f / iscale;
    }
    std::memcpy(scales + b, &d, sizeof d);
  }
}

}  // namespace dynamoe::cpu
