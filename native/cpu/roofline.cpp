#include "roofline.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "../core/aligned_buffer.h"
#include "thread_pool.h"

namespace dynamoe::cpu {

namespace {

constexpr size_t kReadBufferBytes = size_t{512} << 20;  // far past any last-level cache
constexpr double kProbeSeconds = 0.3;  // per peak, over all its rounds
// The best of several rounds: the second vCPU is sometimes busy, and a round it misses reads half the peak (one
// 0.3 s FMA round once gave 117 of 224 GFLOP/s on 2 threads).
constexpr int kReadRounds = 5;
constexpr int kPeakRounds = 4;

double seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

using FmaProbe = double (*)(long);

FmaProbe probeFor(Isa isa) {
#if defined(DYNAMOE_X86_KERNELS)
  if (isa == Isa::Avx512 || isa == Isa::Avx512Bf16) return fmaProbeAvx512;
  if (isa == Isa::Avx2) return fmaProbeAvx2;
#endif
  (void)isa;
  return fmaProbeScalar;
}

// Flops per second with every pool thread running the probe.
double parallelFlops(FmaProbe probe, long iterations) {
  ThreadPool& pool = cpuThreadPool();
  std::vector<double> flops(pool.threads());
  const auto start = std::chrono::steady_clock::now();
  pool.parallelFor(flops.size(), [&](size_t i) { flops[i] = probe(iterations); });
  double total = 0;
  for (double f : flops) total += f;
  return total / seconds(start);
}

double readBandwidth() {
  AlignedBuffer buffer(kReadBufferBytes);  // zero-filled, so every page is resident before timing
  ThreadPool& pool = cpuThreadPool();
  const size_t items = static_cast<size_t>(pool.threads());
  // Each thread reads two far-apart halves of its share side by side: two streams per core keep more misses in
  // flight than one (one stream per core reads ~10% below what the kernels reach on this kind of VM).
  const size_t half = kReadBufferBytes / sizeof(uint64_t) / items / 2;
  std::vector<uint64_t> sinks(items);
  double best = 0;
  for (int round = 0; round < kReadRounds; ++round) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallelFor(items, [&](size_t item) {
      const uint64_t* first = buffer.as<uint64_t>() + item * 2 * half;
      const uint64_t* second = first + half;
      uint64_t a = 0, b = 0, c = 0, d = 0;  // independent chains keep several loads in flight
      for (size_t i = 0; i + 2 <= half; i += 2) {
        a ^= first[i];
        b ^= first[i + 1];
        c ^= second[i];
        d ^= second[i + 1];
      }
      sinks[item] = a ^ b ^ c ^ d;
    });
    best = std::max(best, static_cast<double>(kReadBufferBytes) / seconds(start));
  }
  return sinks[0] == 1 ? best + 1e-9 : best;  // the sink is read so the loop is not optimised away
}

// Flops per second of `probe` on every pool thread: the best of kPeakRounds rounds, about kProbeSeconds in all.
double peakFlops(FmaProbe probe) {
  // Calibrate: time a short run, then size the rounds to about kProbeSeconds together.
  const long calibration = 1 << 20;
  // Iterations per second of one thread (parallelFlops sums every thread's flops).
  const double rate = parallelFlops(probe, calibration) / probe(1) / cpuThreadPool().threads();
  const long iterations = std::max<long>(calibration, static_cast<long>(rate * kProbeSeconds / kPeakRounds));
  double best = 0;
  for (int round = 0; round < kPeakRounds; ++round) best = std::max(best, parallelFlops(probe, iterations));
  return best;
}

// Flops per second of one run of `probe` on the calling thread.
double threadFlops(FmaProbe probe, long iterations) {
  const auto start = std::chrono::steady_clock::now();
  const double flops = probe(iterations);
  return flops / seconds(start);
}

}  // namespace

bool bf16DotsOutrunFma() {
#if defined(DYNAMOE_X86_KERNELS)
  if (!isaSupported(Isa::Avx512Bf16)) return false;
  constexpr long kIterations = 20000;  // about 0.1 ms a run
  // Alternated, so a busy or clocking-up moment hits both; each peak is the best of its runs (a busy moment only
  // lowers a figure). 16 rounds, ~3 ms once per process: with 5 (~1 ms), one busy millisecond on a 2x CPU could
  // disturb every dot run and make the default widen.
  constexpr int kRounds = 16;
  double dot = 0, fma = 0;
  for (int round = 0; round < kRounds; ++round) {
    dot = std::max(dot, threadFlops(bf16DotProbeAvx512, kIterations));
    fma = std::max(fma, threadFlops(fmaProbeAvx512, kIterations));
  }
  return dot >= kDotAdvantage * fma;
#else
  return false;
#endif
}

Roofline measureRoofline(Isa isa) {
  Roofline roofline;
  roofline.fmaGflops = peakFlops(probeFor(isa)) / 1e9;
#if defined(DYNAMOE_X86_KERNELS)
  if (isaSupported(Isa::Avx512Bf16)) roofline.bf16DotGflops = peakFlops(bf16DotProbeAvx512) / 1e9;
#endif
  roofline.readGBps = readBandwidth() / 1e9;
  return roofline;
}

double fmaProbeScalar(long iterations) {
  float acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = static_cast<float>(j);
  for (long i = 0; i < iterations; ++i) {
    for (int j = 0; j < 12; ++j) acc[j] = acc[j] * 1.0000001f + 1e-7f;
  }
  volatile float sink = acc[0] + acc[11];
  (void)sink;
  return 2.0 * 12 * iterations;
}

}  // namespace dynamoe::cpu
