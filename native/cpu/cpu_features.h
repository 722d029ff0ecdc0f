// Run-time CPU feature detection and the choice of SIMD kernel family.
#pragma once

#include <string>

namespace dynamoe::cpu {

struct CpuFeatures {
  bool avx2 = false;  // with FMA and F16C
  bool avx512 = false;  // AVX-512 F/BW/VL/DQ
  bool avx512bf16 = false;
  bool avx512vnni = false;  // with AVX-512 F/BW/VL/DQ: vpdpbusd / vpdpwssd for the integer quantized dots
  bool avxvnni = false;     // with AVX2: the VEX vpdpbusd / vpdpwssd, which the AVX2 family's integer dots use
};

// Avx512Bf16: the AVX-512 family with bf16 dot products for bf16 weights: its bf16 tiles round the activations to
// bf16 (as llama.cpp and oneDNN do), where the other families widen the weights and keep f32 activations.
enum class Isa { Scalar, Avx2, Avx512, Avx512Bf16 };

const CpuFeatures& cpuFeatures();
const char* isaName(Isa isa);
bool parseIsa(const std::string& name, Isa* out);
bool isaSupported(Isa isa);
// The fastest family this CPU runs: Avx512Bf16 where its bf16 dot products outrun the fp32 FMAs (measured once,
// about a millisecond: bf16DotsOutrunFma), else the widest of AVX-512, AVX2 and scalar.
Isa bestIsa();

}  // namespace dynamoe::cpu
