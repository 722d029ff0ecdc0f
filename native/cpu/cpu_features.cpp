#include "cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "roofline.h"

namespace dynamoe::cpu {

namespace {
CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  f.avx512vnni = f.avx512 && __builtin_cpu_supports("avx512vnni");
  // AVX-VNNI is CPUID leaf 7, sub-leaf 1, EAX bit 4 (read directly: not every compiler's
  // __builtin_cpu_supports knows the name); the OS's AVX state is checked with AVX2 above.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  f.avxvnni = f.avx2 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 4)) != 0;
#if defined(__GNUC__) && __GNUC__ >= 11
  f.avx512bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
#endif
  return f;
}
}  // namespace

const CpuFeatures& cpuFeatures() {
  static const CpuFeatures features = detect();
  return features;
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512bf16";
  }
  return "?";
}

bool parseIsa(const std::string& name, Isa* out) {
  if (name == "scalar") *out = Isa::Scalar;
  else if (name == "avx2") *out = Isa::Avx2;
  else if (name == "avx512") *out = Isa::Avx512;
  else if (name == "avx512bf16") *out = Isa::Avx512Bf16;
  else return false;
  return true;
}

bool isaSupported(Isa isa) {
#if defined(DYNAMOE_X86_KERNELS)
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return cpuFeatures().avx2;
    case Isa::Avx512: return cpuFeatures().avx512;
    case Isa::Avx512Bf16: return cpuFeatures().avx512bf16;
  }
  return false;
#else
  return isa == Isa::Scalar;  // SIMD kernel files are only built for x86-64
#endif
}

Isa bestIsa() {
  // bf16 dot products only where they clearly outrun the FMAs: 2x on the AMD Zen 4 VMs measured, half on a Sapphire
  // Rapids host, where widening bf16 to f32 is the faster way.
  if (isaSupported(Isa::Avx512Bf16) && bf16DotsOutrunFma()) return Isa::Avx512Bf16;
  if (isaSupported(Isa::Avx512)) return Isa::Avx512;
  if (isaSupported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

}  // namespace dynamoe::cpu
