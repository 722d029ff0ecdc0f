// AVX2 FMA throughput probe for the roofline (compiled with the AVX2 kernels' flags).
#include "roofline.h"
#include "simd_avx2.h"
#include "simd_tile.h"

namespace dynamoe::cpu {

double fmaProbeAvx2(long iterations) { return simdFmaProbe<Avx2>(iterations); }

}  // namespace dynamoe::cpu
