// The integer quantized dot products with AVX-VNNI (VEX vpdpbusd / vpdpwssd on 256-bit registers): the AVX2 family's
// kernels on CPUs that have VNNI without AVX-512. The same exact integers and float operations as quant_int_avx2.cpp,
// so the same bits, in fewer instructions; only called when the CPU reports AVX-VNNI.
#include "simd_quant_int.h"

namespace dynamoe::cpu {

void quantIntDotAvxVnni(const QuantIntJob& job) { QuantInt256<Dot256::AvxVnni>::run(job); }

}  // namespace dynamoe::cpu
