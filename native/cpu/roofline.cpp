#include "roofline.h"

#include <chrono>
#include <cstdint>
#include <vector>

#include "../aligned_buffer.h"
#include "../thread_pool.h"

namespace dynamoe::cpu {

namespace {

constexpr size_t kReadBufferBytes = size_t{512} << 20;  // far past any last-level cache
constexpr double kProbeSeconds = 0.3;

double seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

using FmaProbe = double (*)(long);

FmaProbe probeFor(Isa isa) {
#if defined(DYNAMOE_X86_KERNELS)
  if (isa == Isa::Avx512) return fmaProbeAvx512;
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
  const size_t words = kReadBufferBytes / sizeof(uint64_t);
  const size_t items = static_cast<size_t>(pool.threads());
  std::vector<uint64_t> sinks(items);
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallelFor(items, [&](size_t item) {
      const uint64_t* data = buffer.as<uint64_t>() + item * (words / items);
      uint64_t a = 0, b = 0, c = 0, d = 0;  // independent chains keep several loads in flight
      for (size_t i = 0; i + 4 <= words / items; i += 4) {
        a ^= data[i];
        b ^= data[i + 1];
        c ^= data[i + 2];
        d ^= data[i + 3];
      }
      sinks[item] = a ^ b ^ c ^ d;
    });
    best = std::max(best, static_cast<double>(kReadBufferBytes) / seconds(start));
  }
  return sinks[0] == 1 ? best + 1e-9 : best;  // the sink is read so the loop is not optimised away
}

}  // namespace

Roofline measureRoofline(Isa isa) {
  const FmaProbe probe = probeFor(isa);
  // Calibrate: time a short run, then size the real one to about kProbeSeconds.
  const long calibration = 1 << 20;
  const double rate = parallelFlops(probe, calibration) / probe(1);
  const long iterations = std::max<long>(calibration, static_cast<long>(rate * kProbeSeconds));
  Roofline roofline;
  roofline.fmaGflops = parallelFlops(probe, iterations) / 1e9;
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
