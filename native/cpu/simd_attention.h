// One causal attention row (AttendJob) over a SIMD register type V (simd_avx2.h, simd_avx512.h): scores for 8 key
// positions at a time (8 independent FMA chains, one query load per 8 key loads), a vector exp, then the weighted
// sum of values in chunks of up to 8 accumulator registers. Internal linkage: each ISA file gets its own copy.
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

  // scores[p] = q . key p, for every visible position.
  static void dots(const AttendJob& job) {
    const int n = job.headDim;
    const size_t stride = job.kvStride;
    int p = 0;
    for (; p + 8 <= job.visible; p += 8) {
      const float* k = job.keys + static_cast<size_t>(p) * stride;
      Reg acc[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) acc[j] = V::zero();
      for (int d = 0; d < n; d += L) {
        const Reg q = V::load(job.query + d);
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[j] = V::fmadd(q, V::load(k + j * stride + d), acc[j]);
      }
      V::storeSums8(job.scores + p, acc);
    }
    for (; p < job.visible; ++p) {
      const float* k = job.keys + static_cast<size_t>(p) * stride;
      Reg acc = V::zero();
      for (int d = 0; d < n; d += L) acc = V::fmadd(V::load(job.query + d), V::load(k + d), acc);
      job.scores[p] = V::sum(acc);
    }
  }

  // scores[p] = softmax(scale * scores)[p].
  static void softmax(const AttendJob& job) {
    float maxDot = -INFINITY;
    for (int p = 0; p < job.visible; ++p) maxDot = std::max(maxDot, job.scores[p]);
    const int padded = (job.visible + L - 1) / L * L;  // within attendScratchFloats
    for (int p = job.visible; p < padded; ++p) job.scores[p] = 0.0f;
    const Reg scale = V::set1(job.scale);
    const Reg maxScore = V::set1(maxDot * job.scale);  // the largest scaled score: scale > 0
    for (int p = 0; p < padded; p += L) {
      V::store(job.scores + p, expPs<V>(V::sub(V::mul(V::load(job.scores + p), scale), maxScore)));
    }
    double sum = 0.0;  // in double: hundreds of thousands of positions add up without losing the small ones
    for (int p = 0; p < job.visible; ++p) sum += job.scores[p];
    const Reg inverse = V::set1(static_cast<float>(1.0 / sum));
    for (int p = 0; p < padded; p += L) V::store(job.scores + p, V::mul(V::load(job.scores + p), inverse));
  }

  // out[d .. d + N*L) = sum over positions of scores[p] * value p [d .. d + N*L).
  template <int N>
  static void weightedValues(const AttendJob& job, int d) {
    Reg acc[N];
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) acc[j] = V::zero();
    for (int p = 0; p < job.visible; ++p) {
      const Reg w = V::broadcast(job.scores + p);
      const float* v = job.values + static_cast<size_t>(p) * job.kvStride + d;
#pragma GCC unroll 8
      for (int j = 0; j < N; ++j) acc[j] = V::fmadd(w, V::load(v + j * L), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) V::store(job.out + d + j * L, acc[j]);
  }

  static void run(const AttendJob& job) {
    if (job.headDim % L != 0) return attendScalar(job);
    dots(job);
    softmax(job);
    int d = 0;
    for (; d + 8 * L <= job.headDim; d += 8 * L) weightedValues<8>(job, d);
    if (d + 4 * L <= job.headDim) weightedValues<4>(job, d), d += 4 * L;
    if (d + 2 * L <= job.headDim) weightedValues<2>(job, d), d += 2 * L;
    if (d + L <= job.headDim) weightedValues<1>(job, d);
  }
};

}  // namespace
}  // namespace dynamoe::cpu
