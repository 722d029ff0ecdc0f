// Causal attention of one query row for the heads that share a key/value head (AttendJob) over a SIMD register
// type V (simd_avx2.h, simd_avx512.h): scores of up to 4 heads for several key positions at a time (each key load
// serving every head), a vector exp, then the weighted sums of values, each value load serving up to 4 heads.
// Internal linkage: each ISA file gets its own copy.
#pragma once

#include <algorithm>
#include <cmath>

#include "simd_math.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {
namespace {

template <class V>
struct SimdAttend {
  using Reg = typename V::Reg;
  static constexpr int L = V::kLanes;
  // Accumulator registers a kernel keeps: half the register file (16 of the 32 zmm, 8 of the 16 ymm registers).
  static constexpr int kAccumulators = L == 16 ? 16 : 8;

  static const float* queryOf(const AttendJob& job, int g) { return job.query + static_cast<size_t>(g) * job.headDim; }
  static float* scoresOf(const AttendJob& job, int g) {
    return job.scores + static_cast<size_t>(g) * attendScratchFloats(job.visible);
  }
  // The start of the block holding the first visible position (a sliding window skips the blocks before it).
  static int firstBlockStart(const AttendJob& job) { return job.first / job.blockTokens * job.blockTokens; }

  // scores of head g at p = query g . key p, for heads first .. first + Q - 1 and every visible position: P
  // positions at a time, each key register loaded serving Q heads.
  template <int Q>
  static void dots(const AttendJob& job, int first) {
    constexpr int P = kAccumulators / Q;
    static_assert(16 % P == 0, "key runs of P positions stay inside a block (a multiple of 16 positions)");
    const int n = job.headDim;
    const size_t stride = job.kvStride;
    for (int start = firstBlockStart(job); start < job.visible; start += job.blockTokens) {
      const int end = std::min(job.visible, start + job.blockTokens);
      const float* const block = attendKeys(job, start / job.blockTokens);
      int p = std::max(start, job.first);
      for (; p + P <= end; p += P) {
        const float* k = block + static_cast<size_t>(p - start) * stride;
        Reg acc[Q * P];
#pragma GCC unroll 16
        for (int j = 0; j < Q * P; ++j) acc[j] = V::zero();
        for (int d = 0; d < n; d += L) {
          Reg q[Q];
#pragma GCC unroll 4
          for (int g = 0; g < Q; ++g) q[g] = V::load(queryOf(job, first + g) + d);
#pragma GCC unroll 16
          for (int j = 0; j < P; ++j) {
            const Reg key = V::load(k + j * stride + d);
#pragma GCC unroll 4
            for (int g = 0; g < Q; ++g) acc[g * P + j] = V::fmadd(q[g], key, acc[g * P + j]);
          }
        }
        float sums[Q * P];
#pragma GCC unroll 2
        for (int i = 0; i < Q * P; i += 8) V::storeSums8(sums + i, *reinterpret_cast<const Reg(*)[8]>(acc + i));
#pragma GCC unroll 4
        for (int g = 0; g < Q; ++g) std::copy_n(sums + g * P, P, scoresOf(job, first + g) + p);
      }
      // The last positions of the sequence: lane sums in the same order as storeSums8, so the same bits.
      for (; p < end; ++p) {
        const float* k = block + static_cast<size_t>(p - start) * stride;
        for (int g = first; g < first + Q; ++g) {
          Reg acc = V::zero();
          for (int d = 0; d < n; d += L) acc = V::fmadd(V::load(queryOf(job, g) + d), V::load(k + d), acc);
          scoresOf(job, g)[p] = V::sum(acc);
        }
      }
    }
  }

  // Head g's scores = softmax(scale * scores) over the visible positions (and the head's sink, when it has one).
  static void softmax(const AttendJob& job, int g) {
    float* const scores = scoresOf(job, g);
    float maxDot = -INFINITY;
    for (int p = job.first; p < job.visible; ++p) maxDot = std::max(maxDot, scores[p]);
    const int aligned = job.first / L * L;  // whole registers from here on
    const int padded = (job.visible + L - 1) / L * L;  // within attendScratchFloats
    for (int p = aligned; p < job.first; ++p) scores[p] = 0.0f;
    for (int p = job.visible; p < padded; ++p) scores[p] = 0.0f;
    const Reg scale = V::set1(job.scale);
    // The largest scaled score (scale > 0), or the sink when it is larger: the sink's logit is not scaled.
    const float maxScaled = job.sinks ? std::max(maxDot * job.scale, job.sinks[g]) : maxDot * job.scale;
    const Reg maxScore = V::set1(maxScaled);
    for (int p = aligned; p < padded; p += L) {
      V::store(scores + p, expPs<V>(V::sub(V::mul(V::load(scores + p), scale), maxScore)));
    }
    // In double: hundreds of thousands of positions add up without losing the small ones.
    double sum = job.sinks ? std::exp(static_cast<double>(job.sinks[g] - maxScaled)) : 0.0;
    for (int p = job.first; p < job.visible; ++p) sum += scores[p];
    const Reg inverse = V::set1(static_cast<float>(1.0 / sum));
    for (int p = aligned; p < padded; p += L) V::store(scores + p, V::mul(V::load(scores + p), inverse));
  }

  // out of heads first .. first + Q - 1, columns [d, d + N*L) = sum over positions of the head's score at p times
  // value p [d .. d + N*L): each value register loaded serves Q heads.
  template <int Q, int N>
  static void weightedValues(const AttendJob& job, int first, int d) {
    Reg acc[Q][N];
#pragma GCC unroll 4
    for (int g = 0; g < Q; ++g) {
#pragma GCC unroll 16
      for (int j = 0; j < N; ++j) acc[g][j] = V::zero();
    }
    for (int start = firstBlockStart(job); start < job.visible; start += job.blockTokens) {
      const int end = std::min(job.visible, start + job.blockTokens);
      const float* const block = attendValues(job, start / job.blockTokens) + d;
      for (int p = std::max(start, job.first); p < end; ++p) {
        const float* v = block + static_cast<size_t>(p - start) * job.kvStride;
        Reg value[N];
#pragma GCC unroll 16
        for (int j = 0; j < N; ++j) value[j] = V::load(v + j * L);
#pragma GCC unroll 4
        for (int g = 0; g < Q; ++g) {
          const Reg w = V::broadcast(scoresOf(job, first + g) + p);
#pragma GCC unroll 16
          for (int j = 0; j < N; ++j) acc[g][j] = V::fmadd(w, value[j], acc[g][j]);
        }
      }
    }
#pragma GCC unroll 4
    for (int g = 0; g < Q; ++g) {
      float* const out = job.out + static_cast<size_t>(first + g) * job.headDim + d;
#pragma GCC unroll 16
      for (int j = 0; j < N; ++j) V::store(out + j * L, acc[g][j]);
    }
  }

  // Every column of heads first .. first + Q - 1 from column d on, N registers at a time, then fewer.
  template <int Q, int N = std::min(8, kAccumulators / Q)>
  static void valueColumns(const AttendJob& job, int first, int d) {
    for (; d + N * L <= job.headDim; d += N * L) weightedValues<Q, N>(job, first, d);
    if constexpr (N > 1) valueColumns<Q, N / 2>(job, first, d);
  }

  // Heads first .. first + Q - 1.
  template <int Q>
  static void heads(const AttendJob& job, int first) {
    dots<Q>(job, first);
    for (int g = first; g < first + Q; ++g) softmax(job, g);
    valueColumns<Q>(job, first, 0);
  }

  static void run(const AttendJob& job) {
    if (job.headDim % L != 0) return attendScalar(job);
    int g = 0;
    for (; g + 4 <= job.queries; g += 4) heads<4>(job, g);
    if (g + 2 <= job.queries) heads<2>(job, g), g += 2;
    if (g < job.queries) heads<1>(job, g);
  }
};

}  // namespace
}  // namespace dynamoe::cpu
