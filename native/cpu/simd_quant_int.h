// The integer dot products of quant_int.h in 256-bit registers: unsigned x signed byte products summed in int32
// lanes, either with AVX2's vpmaddubsw + vpmaddwd or with AVX512-VNNI's vpdpbusd / vpdpwssd (Vnni). The integer
// sums are exact (no vpmaddubsw pair can saturate with these codes: |w| <= 128 against |a| <= 127 for the signed
// types, 63 x 127 for Q6_K), so both give the same integers; each block then adds
// float(lane sums) x (weight scale x row scale) to the row's 8 f32 lanes, which are added in one order at the end.
// A row's operations do not depend on the other rows of the job (batch invariance). Internal linkage: each ISA file
// gets its own copy.
#pragma once

#include <immintrin.h>

#include <cstring>
#include <utility>

#include "quant_int.h"

namespace dynamoe::cpu {
namespace {

template <bool Vnni>
struct QuantInt256 {
  static inline float half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
  }
  static inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
  static inline float scaleOf(const uint8_t* row, int k, int block) {
    float d;
    std::memcpy(&d, row + actScalesOffset(k) + sizeof(float) * block, sizeof d);
    return d;
  }

  // 8 int32 lanes, each the sum of 4 products u x s (u unsigned, s signed bytes).
  static inline __m256i dotBytes(__m256i u, __m256i s) {
    if constexpr (Vnni) {
      return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
    } else {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
    }
  }
  // acc + pairwise int16 products of p and s summed into int32 lanes.
  static inline __m256i addProducts16(__m256i acc, __m256i p, __m256i s) {
    if constexpr (Vnni) {
      return _mm256_dpwssd_epi32(acc, p, s);
    } else {
      return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
    }
  }
  static inline float sum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }

  // E8M0 e -> 2^(e - 128) (MXFP4's scale halved for the doubled value table), exact.
  static inline float e8m0Half(int e) {
    const uint32_t bits = e >= 2 ? static_cast<uint32_t>(e - 1) << 23 : 0x00100000u << e;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }

  // The 32 signed codes of a Q8_0, Q4_0 or MXFP4 block, and its scale.
  template <QuantType T>
  static inline __m256i smallCodes(const uint8_t* b, float* d) {
    if constexpr (T == QuantType::Q8_0) {
      *d = half(b);
      return load(b + 2);
    } else if constexpr (T == QuantType::Q4_0) {
      *d = half(b);
      const __m128i x = load128(b + 2);
      const __m128i m = _mm_set1_epi8(0x0F);
      const __m256i codes = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
      return _mm256_sub_epi8(codes, _mm256_set1_epi8(8));
    } else {
      *d = e8m0Half(b[0]);
      const __m128i x = load128(b + 1);
      const __m128i m = _mm_set1_epi8(0x0F);
      const __m128i table = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
      return _mm256_set_m128i(_mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(x, 4), m)),
                              _mm_shuffle_epi8(table, _mm_and_si128(x, m)));
    }
  }

  template <QuantType T, int R>
  static inline void small(const QuantIntJob& job, const uint8_t* w, float* out) {
    const QuantTraits traits = quantTraits(T);
    const int blocks = job.k / 32;
    __m256 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int blk = 0; blk < blocks; ++blk, w += traits.blockBytes) {
      float dw;
      const __m256i codes = smallCodes<T>(w, &dw);
      const __m256i magnitudes = _mm256_sign_epi8(codes, codes);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256i a = load(job.rows[r] + 32 * blk);
        const __m256i s = dotBytes(magnitudes, _mm256_sign_epi8(a, codes));
        const float scale = dw * scaleOf(job.rows[r], job.k, blk);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(scale), acc[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) out[r] = sum(acc[r]);
  }

  template <int R>
  static inline void q4k(const QuantIntJob& job, const uint8_t* w, float* out) {
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    __m256 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    for (int blk = 0; blk < blocks; ++blk, w += 144) {
      const float d = half(w), dmin = half(w + 2);
      // The 6-bit scales (bytes 0-7 of sm) and mins (bytes 8-15), as ggml unpacks them.
      uint32_t sm[4];
      std::memcpy(sm, w + 4, 12);
      sm[3] = ((sm[2] >> 4) & 0x0f0f0f0f) | (((sm[1] >> 6) & 0x03030303) << 4);
      const uint32_t low = sm[1] & 0x3f3f3f3f;
      sm[1] = (sm[2] & 0x0f0f0f0f) | (((sm[0] >> 6) & 0x03030303) << 4);
      sm[2] = low;
      sm[0] &= 0x3f3f3f3f;
      uint8_t bytes[16];
      std::memcpy(bytes, sm, 16);
      const __m128i minBytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes + 8));
      const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(minBytes, minBytes));  // min j at lanes 2j, 2j+1
      __m256i isum[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256i bits = load(w + 16 + 32 * j);
        const __m256i lo = _mm256_and_si256(bits, nibble);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), nibble);
        const __m256i scLo = _mm256_set1_epi16(bytes[2 * j]);
        const __m256i scHi = _mm256_set1_epi16(bytes[2 * j + 1]);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const uint8_t* q = job.rows[r] + 256 * blk + 64 * j;
          isum[r] = addProducts16(isum[r], _mm256_maddubs_epi16(lo, load(q)), scLo);
          isum[r] = addProducts16(isum[r], _mm256_maddubs_epi16(hi, load(q + 32)), scHi);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const float da = scaleOf(job.rows[r], job.k, blk);
        const __m256i minSums = _mm256_madd_epi16(load(job.rows[r] + sumsOffset + 32 * blk), mins);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(d * da), acc[r]);
        acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(minSums), _mm256_set1_ps(dmin * da), acc[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) out[r] = sum(acc[r]);
  }

  template <int R>
  static inline void q6k(const QuantIntJob& job, const uint8_t* w, float* out) {
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    __m256 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i top = _mm256_set1_epi8(0x30);
    for (int blk = 0; blk < blocks; ++blk, w += 210) {
      const float d = half(w + 208);
      const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
      const __m256i scales = _mm256_cvtepi8_epi16(load128(sc));
      __m256i isum[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 2
      for (int n = 0; n < 2; ++n) {
        const __m256i l0 = load(w + 64 * n), l1 = load(w + 64 * n + 32), h = load(w + 128 + 32 * n);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, nibble), _mm256_and_si256(_mm256_slli_epi16(h, 4), top));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, nibble), _mm256_and_si256(_mm256_slli_epi16(h, 2), top));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), nibble), _mm256_and_si256(h, top));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), nibble),
                               _mm256_and_si256(_mm256_srli_epi16(h, 2), top));
#pragma GCC unroll 4
        for (int m = 0; m < 4; ++m) {
          const int s = 8 * n + 2 * m;  // the scales of values 0-15 and 16-31 of these 32
          const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(sc[s + 1]), _mm_set1_epi16(sc[s]));
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            const uint8_t* qa = job.rows[r] + 256 * blk + 128 * n + 32 * m;
            isum[r] = addProducts16(isum[r], _mm256_maddubs_epi16(q[m], load(qa)), scale);
          }
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        // Codes are stored plus 32: subtract 32 x sum of scale x (the 16-value sums).
        const __m256i offsets = _mm256_madd_epi16(load(job.rows[r] + sumsOffset + 32 * blk), scales);
        const __m256i total = _mm256_sub_epi32(isum[r], _mm256_slli_epi32(offsets, 5));
        const float da = scaleOf(job.rows[r], job.k, blk);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(d * da), acc[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) out[r] = sum(acc[r]);
  }

  template <int R, class Column>
  static inline void columns(const QuantIntJob& job, Column&& column) {
    for (int c = 0; c < job.columns; ++c) column(job.weights + c * job.weightStride, job.out + c * kQuantIntRows);
  }

  template <int R>
  static void rows(const QuantIntJob& job) {
    switch (job.type) {
      case QuantType::Q8_0:
        return columns<R>(job, [&](const uint8_t* w, float* out) { small<QuantType::Q8_0, R>(job, w, out); });
      case QuantType::Q4_0:
        return columns<R>(job, [&](const uint8_t* w, float* out) { small<QuantType::Q4_0, R>(job, w, out); });
      case QuantType::MXFP4:
        return columns<R>(job, [&](const uint8_t* w, float* out) { small<QuantType::MXFP4, R>(job, w, out); });
      case QuantType::Q4_K: return columns<R>(job, [&](const uint8_t* w, float* out) { q4k<R>(job, w, out); });
      case QuantType::Q6_K: return columns<R>(job, [&](const uint8_t* w, float* out) { q6k<R>(job, w, out); });
      default: return;
    }
  }

  template <size_t... Index>
  static void byRows(const QuantIntJob& job, std::index_sequence<Index...>) {
    static constexpr QuantIntDotFn table[] = {&rows<static_cast<int>(Index) + 1>...};
    table[job.rowCount - 1](job);
  }

  static void run(const QuantIntJob& job) { byRows(job, std::make_index_sequence<kQuantIntRows>{}); }
};

}  // namespace
}  // namespace dynamoe::cpu
