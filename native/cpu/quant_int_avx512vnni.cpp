// The integer quantized dot products with AVX512-VNNI on 512-bit registers (vpdpbusd, vpdpwssd); only called when
// the CPU reports AVX512_VNNI with AVX-512 F/BW/VL/DQ.
#include "simd_quant_int.h"

namespace dynamoe::cpu {

void quantIntDotAvx512Vnni(const QuantIntJob& job) { QuantInt512::run(job); }

}  // namespace dynamoe::cpu
