// AVX-512 FMA throughput probe for the roofline (compiled with the AVX-512 kernels' flags).
#include "roofline.h"
#include "simd_avx512.h"
#include "simd_tile.h"

namespace dynamoe::cpu {

double fmaProbeAvx512(long iterations) { return simdFmaProbe<Avx512>(iterations); }

}  // namespace dynamoe::cpu
