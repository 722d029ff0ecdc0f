// bf16 dot-product throughput probe for the roofline (compiled with the AVX512-BF16 kernels' flags).
#include "roofline.h"
#include "simd_avx512bf16.h"

namespace dynamoe::cpu {

double bf16DotProbeAvx512(long iterations) {
  __m512 acc[12];
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80);  // (1, 1)
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x33D633D6);  // (1e-7, 1e-7), roughly
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  __m512 sum = acc[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; ++j) sum = _mm512_add_ps(sum, acc[j]);
  volatile float sink = _mm512_cvtss_f32(sum);
  (void)sink;
  return 2.0 * 32 * 12 * static_cast<double>(iterations);  // 16 lanes x 2 products, a multiply and an add each
}

}  // namespace dynamoe::cpu
