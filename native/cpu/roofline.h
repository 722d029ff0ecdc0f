// This machine's limits, measured: peak fp32 FMA throughput of a kernel family and memory read bandwidth,
// so benchmarks can print every figure as a fraction of what the hardware can do.
#pragma once

#include "cpu_features.h"

namespace dynamoe::cpu {

struct Roofline {
  double fmaGflops = 0;  // fp32 FMA, all pool threads, the given family's widest vectors
  double readGBps = 0;   // streaming reads of a buffer far larger than the caches, all pool threads
  double bf16DotGflops = 0;  // bf16 dot products (vdpbf16ps), all pool threads; 0 where the CPU has none
};

// Runs for about a second. The FMA figure is for `isa`'s registers (scalar: what the compiler makes of a loop); the
// bf16 dot-product figure is measured whenever the CPU has AVX512_BF16, whatever `isa` is.
Roofline measureRoofline(Isa isa);
// Whether bf16 dot products (AVX512_BF16) do at least kDotAdvantage times the flops of the fp32 FMAs on one core of
// this CPU: best of 16 alternating runs of each probe on the calling thread, about 3 ms in all. False where
// the CPU has none.
constexpr double kDotAdvantage = 1.5;
bool bf16DotsOutrunFma();

// Per-family FMA loops: 12 independent chains for `iterations` rounds; return the flops performed.
double fmaProbeScalar(long iterations);
#if defined(DYNAMOE_X86_KERNELS)
double fmaProbeAvx2(long iterations);
double fmaProbeAvx512(long iterations);
double bf16DotProbeAvx512(long iterations);
#endif

}  // namespace dynamoe::cpu
