// AVX-512 FMA throughput probe for the roofline (compiled with the AVX-512 kernels' flags).
#include <immintrin.h>

#include "roofline.h"

namespace dynamoe::cpu {

double fmaProbeAvx512(long iterations) {
  __m512 acc[12];
  const __m512 m = _mm512_set1_ps(1.0000001f);
  const __m512 c = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_fmadd_ps(acc[j], m, c);
  }
  __m512 sum = acc[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; ++j) sum = _mm512_add_ps(sum, acc[j]);
  volatile float sink = _mm512_cvtss_f32(sum);
  (void)sink;
  return 2.0 * 16 * 12 * iterations;
}

}  // namespace dynamoe::cpu
