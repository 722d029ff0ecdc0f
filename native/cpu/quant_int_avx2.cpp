// The integer quantized dot products with AVX2 (vpmaddubsw + vpmaddwd); only called when the CPU reports AVX2.
#include "simd_quant_int.h"

namespace dynamoe::cpu {

void quantIntDotAvx2(const QuantIntJob& job) { QuantInt256<Dot256::Maddubs>::run(job); }

}  // namespace dynamoe::cpu
