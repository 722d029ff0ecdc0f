// Checks the bf16 dot-product tile (native/cpu/simd_dot_tile.h) without an AVX512-BF16 CPU: the tile is
// instantiated over AVX2 registers with vdpbf16ps emulated exactly (products of bf16 values are exact in f32; the
// odd element's product is added first, then the even one's, each rounded to nearest even), and its rows rounded
// as vcvtneps2bf16 does. Each case runs the tile on random panels in the packed k-pair layout, over one or two K
// ranges (running sums), with both epilogues, against a float64 reference on the same bf16 values.
// The real AVX512-BF16 family runs the same template; jest's tests 30 and 35 check it on CPUs that have it.
// Usage: bf16_dot_check [cases]; exits non-zero on the first disagreement. Build with -mavx2 -mfma -mf16c.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../native/cpu/simd_avx2.h"
#include "../../native/cpu/simd_dot_tile.h"

namespace dynamoe::cpu {
namespace {

// vdpbf16ps on 8 lanes, and the row rounding of vcvtneps2bf16 (denormals to signed zero, then nearest even).
struct Avx2Bf16DotEmulation {
  using F32 = Avx2;
  using Pairs = __m256i;
  static Pairs loadPairs(const uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static Pairs broadcastPair(const uint16_t* p) {
    int pair;
    std::memcpy(&pair, p, sizeof pair);
    return _mm256_set1_epi32(pair);
  }
  static __m256 dot(__m256 acc, Pairs a, Pairs b) {
    const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    const auto odd = [&](__m256i v) { return _mm256_castsi256_ps(_mm256_and_si256(v, high)); };
    const auto even = [](__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); };
    return _mm256_fmadd_ps(even(a), even(b), _mm256_fmadd_ps(odd(a), odd(b), acc));
  }
  static void roundRow(const float* row, int k, uint16_t* out) {
    for (int i = 0; i < k; ++i) {
      const uint32_t bits = floatBits(row[i]);
      const bool denormal = (bits & 0x7f800000u) == 0;
      out[i] = denormal ? static_cast<uint16_t>((bits >> 16) & 0x8000u) : f32ToBf16(row[i]);
    }
    if (k % 2 != 0) out[k] = 0;
  }
};

constexpr int kMaxRows = 3;

float bf16Value(uint16_t bits) { return bitsFloat(static_cast<uint32_t>(bits) << 16); }

template <int MR>
void runTile(const TileJob& job) {
  SimdDotTile<Avx2Bf16DotEmulation, MR>::run(job);
}

bool checkCase(std::mt19937& rng, int rowCount, int k, int split, Epilogue epilogue, bool prefetch, int id) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int pairsK = storedK(DType::BF16, k);
  // Panel in the k-pair layout; value (kk, c) also kept as float64 for the reference.
  std::vector<uint16_t> panel(static_cast<size_t>(pairsK) * kPanelWidth, 0);
  std::vector<double> w(static_cast<size_t>(k) * kPanelWidth);
  for (int kk = 0; kk < k; ++kk) {
    for (int c = 0; c < kPanelWidth; ++c) {
      const uint16_t bits = f32ToBf16(normal(rng));
      panel[panelElementIndex(DType::BF16, static_cast<size_t>(kk), c)] = bits;
      w[static_cast<size_t>(kk) * kPanelWidth + c] = bf16Value(bits);
    }
  }
  std::vector<float> x(static_cast<size_t>(rowCount) * k);
  for (float& v : x) v = normal(rng) * 3.0f;
  std::vector<float> scale(rowCount);
  for (float& s : scale) s = 0.5f + std::abs(normal(rng));
  std::vector<float> out(static_cast<size_t>(rowCount) * kPanelWidth, NAN);
  std::vector<float> partial(static_cast<size_t>(rowCount) * kPanelWidth, NAN);
  std::vector<char> ahead(static_cast<size_t>(k) * 64 + 64);

  // The tile's K ranges: [0, split) and [split, k) (split even), or all of K when split is 0.
  const int ranges[3] = {0, split > 0 ? split : k, k};
  const int rangeCount = split > 0 ? 2 : 1;
  std::vector<uint16_t> rounded(static_cast<size_t>(rowCount) * (pairsK + 2));
  const size_t stride = static_cast<size_t>(pairsK) + 2;
  const void* rows[kMaxRows];
  float* outs[kMaxRows];
  for (int range = 0; range < rangeCount; ++range) {
    const int begin = ranges[range];
    TileJob job{};
    job.rowCount = rowCount;
    job.k = ranges[range + 1] - begin;
    job.first = range == 0;
    job.last = range == rangeCount - 1;
    job.panel = panel.data() + static_cast<size_t>(begin) * kPanelWidth;
    job.partial = partial.data();
    job.epilogue = epilogue;
    job.rowScale = scale.data();
    job.prefetch = prefetch ? ahead.data() : nullptr;
    job.prefetchLines = prefetch ? job.k : 0;
    for (int r = 0; r < rowCount; ++r) {
      Avx2Bf16DotEmulation::roundRow(x.data() + static_cast<size_t>(r) * k + begin, job.k, rounded.data() + r * stride);
      rows[r] = rounded.data() + r * stride;
      outs[r] = out.data() + static_cast<size_t>(r) * kPanelWidth;
    }
    job.rows = rows;
    job.out = outs;
    if (rowCount == 1) runTile<1>(job);
    if (rowCount == 2) runTile<2>(job);
    if (rowCount == 3) runTile<3>(job);
  }

  // Reference: the same bf16 weights, activations rounded to bf16, sums in float64.
  double worst = 0, largest = 0;
  const int columns = epilogueColumns(epilogue);
  for (int r = 0; r < rowCount; ++r) {
    double sums[kPanelWidth] = {};
    for (int kk = 0; kk < k; ++kk) {
      const double a = bf16Value(f32ToBf16(x[static_cast<size_t>(r) * k + kk]));
      for (int c = 0; c < kPanelWidth; ++c) sums[c] += a * w[static_cast<size_t>(kk) * kPanelWidth + c];
    }
    for (int c = 0; c < columns; ++c) {
      const double expected = epilogue == Epilogue::SwiGlu
                                  ? sums[c] / (1.0 + std::exp(-sums[c])) * sums[c + kSwiGluColumns]
                                  : sums[c] * scale[r];
      worst = std::max(worst, std::abs(out[static_cast<size_t>(r) * kPanelWidth + c] - expected));
      largest = std::max(largest, std::abs(expected));
    }
  }
  // f32 accumulation over k terms: ~sqrt(k) * 2^-24 relative; 1e-5 of the largest output leaves a wide margin.
  const double relative = worst / std::max(largest, 1e-30);
  if (!(relative <= 1e-5)) {
    std::printf("case %d: rows %d k %d split %d %s prefetch %d: error %.3g of max |ref| %.3g\n", id, rowCount, k,
                split, epilogue == Epilogue::SwiGlu ? "swiglu" : "scaled", prefetch, relative, largest);
    return false;
  }
  return true;
}

}  // namespace
}  // namespace dynamoe::cpu

int main(int argc, char** argv) {
  using namespace dynamoe;
  using namespace dynamoe::cpu;
  const int cases = argc > 1 ? std::atoi(argv[1]) : 400;
  std::mt19937 rng(20261122);
  const int edgeK[] = {1, 2, 3, 4, 5, 15, 16, 17, 33, 64, 255, 256, 257, 530};
  int run = 0;
  for (int i = 0; i < cases; ++i) {
    const int rowCount = 1 + i % kMaxRows;
    const int k = i < 3 * 14 ? edgeK[i / 3] : 1 + static_cast<int>(rng() % 700);
    const int split = (i % 5 == 4 && k >= 4) ? (k / 2) & ~1 : 0;  // two K ranges: running sums across them
    const Epilogue epilogue = i % 2 ? Epilogue::SwiGlu : Epilogue::Scaled;
    if (!checkCase(rng, rowCount, k, split, epilogue, i % 3 == 0, i)) return 1;
    ++run;
  }
  std::printf("bf16 dot tile (AVX2 emulation of vdpbf16ps): %d cases agree with the float64 reference\n", run);
  return 0;
}
