// AVX2 FMA throughput probe for the roofline (compiled with the AVX2 kernels' flags).
#include <immintrin.h>

#include "roofline.h"

namespace dynamoe::cpu {

double fmaProbeAvx2(long iterations) {
  __m256 acc[12];
  const __m256 m = _mm256_set1_ps(1.0000001f);
  const __m256 c = _mm256_set1_ps(1e-7f);
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j));
  for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
  }
  __m256 sum = acc[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; ++j) sum = _mm256_add_ps(sum, acc[j]);
  volatile float sink = _mm256_cvtss_f32(sum);
  (void)sink;
  return 2.0 * 8 * 12 * iterations;
}

}  // namespace dynamoe::cpu
