// Run-time CPU feature detection and the choice of SIMD kernel family.
#pragma once

#include <string>

namespace dynamoe::cpu {

struct CpuFeatures {
  bool avx2 = false;  // with FMA and F16C
  bool avx512 = false;  // AVX-512 F/BW/VL/DQ
  bool avx512bf16 = false;
};

enum class Isa { Scalar, Avx2, Avx512 };

const CpuFeatures& cpuFeatures();
const char* isaName(Isa isa);
bool parseIsa(const std::string& name, Isa* out);
bool isaSupported(Isa isa);
// The best family this CPU runs.
Isa bestIsa();

}  // namespace dynamoe::cpu
