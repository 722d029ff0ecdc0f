// The integer dot products of quant_int.h. QuantInt256: 256-bit registers, unsigned x signed byte products summed in
// int32 lanes with AVX2's vpmaddubsw + vpmaddwd, or vpdpbusd / vpdpwssd: AVX512-VNNI's (EVEX, Dot256::Vnni512) or
// AVX-VNNI's (VEX, Dot256::AvxVnni: VNNI on CPUs without AVX-512). The integer sums are
// exact (no vpmaddubsw pair can saturate with these codes: |w| <= 128 against |a| <= 127 for the signed types, 63 x
// 127 for Q6_K), so both give the same integers; each block then adds float(lane sums) x (weight scale x row scale)
// to the row's f32 lanes, which are added in one order at the end. QuantInt512 (AVX512-VNNI): the same in 512-bit
// registers. A row's operations do not depend on the other rows of the job (batch invariance). Internal linkage:
// each ISA file gets its own copy.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "quant_int.h"

// Unrolling for the optimized builds. Sanitizer builds skip it: clang with ASan + UBSan took minutes on the fully
// unrolled lanes kernels (10 s without), and their speed does not matter there.
#if defined(__SANITIZE_ADDRESS__)
#define DYNAMOE_UNROLL(n)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DYNAMOE_UNROLL(n)
#endif
#endif
#ifndef DYNAMOE_UNROLL
#define DYNAMOE_PRAGMA(text) _Pragma(#text)
#define DYNAMOE_UNROLL(n) DYNAMOE_PRAGMA(GCC unroll n)
#endif

namespace dynamoe::cpu {
namespace {

enum class Dot256 { Maddubs, Vnni512, AvxVnni };

template <Dot256 Dot>
struct QuantInt256 {
  static inline float half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
  }
  static inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
  // Jobs of few rows (decode) wait on their weight stream: fetching the weights 4 KiB ahead into L1 keeps more of a
  // core's misses in flight than the hardware prefetcher alone. Decode on the bench model (2 vCPUs of a Xeon, VNNI
  // kernels), tokens/s without / with 1, 2, 4 KiB: Q8_0 182 / 235 / 327 / 328, Q4_K_M 317 / 362 / 417 / 457,
  // MXFP4_MOE 204 / 325 / 320 / 330.
  template <int R>
  static inline void fetchAhead(const uint8_t* w) {
    if constexpr (R <= 2) _mm_prefetch(reinterpret_cast<const char*>(w) + 4096, _MM_HINT_T0);
  }
  static inline float scaleOf(const uint8_t* row, int k, int block) {
    float d;
    std::memcpy(&d, row + actScalesOffset(k) + sizeof(float) * block, sizeof d);
    return d;
  }

  // 8 int32 lanes, each the sum of 4 products u x s (u unsigned, s signed bytes).
  static inline __m256i dotBytes(__m256i u, __m256i s) {
    if constexpr (Dot == Dot256::Vnni512) {
      return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
    } else if constexpr (Dot == Dot256::AvxVnni) {
      return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
    } else {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
    }
  }
  // acc + pairwise int16 products of p and s summed into int32 lanes.
  // R: the rows whose sums are accumulated side by side. AVX-VNNI's vpdpwssd chains its 5-cycle latency through
  // acc, so with fewer than 4 independent rows (decode) vpmaddwd + vpaddd, which chains 1 cycle, is faster (Q4_K_M
  // decode measured 10% slower with it at one row); the sums are the same exact integers either way.
  template <int R = 4>
  static inline __m256i addProducts16(__m256i acc, __m256i p, __m256i s) {
    if constexpr (Dot == Dot256::Vnni512) {
      return _mm256_dpwssd_epi32(acc, p, s);
    } else if constexpr (Dot == Dot256::AvxVnni && R >= 4) {
      return _mm256_dpwssd_avx_epi32(acc, p, s);
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
    const uint32_t bits = e >= 2 ? static_cast<uint32_t>(e - 1) << 23 : 0x00400000u >> (1 - e);
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
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int blk = 0; blk < blocks; ++blk, w += traits.blockBytes) {
      if (blk % 2 == 0) fetchAhead<R>(w);
      float dw;
      const __m256i codes = smallCodes<T>(w, &dw);
      const __m256i magnitudes = _mm256_sign_epi8(codes, codes);
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        const __m256i a = _mm256_xor_si256(load(job.rows[r] + 32 * blk), _mm256_set1_epi8(-128));  // stored q + 128
        const __m256i s = dotBytes(magnitudes, _mm256_sign_epi8(a, codes));
        const float scale = dw * scaleOf(job.rows[r], job.k, blk);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(scale), acc[r]);
      }
    }
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) out[r] = sum(acc[r]);
  }

  // Q4_K, or Q5_K (Five: a fifth bit per value from qh, and the codes 16 bytes further on).
  template <int R, bool Five = false>
  static inline void q4k(const QuantIntJob& job, const uint8_t* w, float* out) {
    constexpr int kBytes = Five ? 176 : 144;
    constexpr int kCodes = Five ? 48 : 16;
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    __m256 acc[R];
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    for (int blk = 0; blk < blocks; ++blk, w += kBytes) {
      fetchAhead<R>(w);
      fetchAhead<R>(w + 64);
      fetchAhead<R>(w + 128);
      if constexpr (Five) fetchAhead<R>(w + 175);
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
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
DYNAMOE_UNROLL(4)
      for (int j = 0; j < 4; ++j) {
        const __m256i bits = load(w + kCodes + 32 * j);
        __m256i lo = _mm256_and_si256(bits, nibble);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), nibble);
        if constexpr (Five) {
          const __m256i qh = load(w + 16), one = _mm256_set1_epi8(1);
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4));
        }
        const __m256i scLo = _mm256_set1_epi16(bytes[2 * j]);
        const __m256i scHi = _mm256_set1_epi16(bytes[2 * j + 1]);
DYNAMOE_UNROLL(8)
        for (int r = 0; r < R; ++r) {
          const uint8_t* q = job.rows[r] + 256 * blk + 64 * j;
          isum[r] = addProducts16<R>(isum[r], _mm256_maddubs_epi16(lo, load(q)), scLo);
          isum[r] = addProducts16<R>(isum[r], _mm256_maddubs_epi16(hi, load(q + 32)), scHi);
        }
      }
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        const float da = scaleOf(job.rows[r], job.k, blk);
        const __m256i minSums = _mm256_madd_epi16(load(job.rows[r] + sumsOffset + 32 * blk), mins);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(d * da), acc[r]);
        acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(minSums), _mm256_set1_ps(dmin * da), acc[r]);
      }
    }
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) out[r] = sum(acc[r]);
  }

  template <int R>
  static inline void q6k(const QuantIntJob& job, const uint8_t* w, float* out) {
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    __m256 acc[R];
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i top = _mm256_set1_epi8(0x30);
    for (int blk = 0; blk < blocks; ++blk, w += 210) {
      fetchAhead<R>(w);
      fetchAhead<R>(w + 64);
      fetchAhead<R>(w + 128);
      fetchAhead<R>(w + 192);
      const float d = half(w + 208);
      const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
      const __m256i scales = _mm256_cvtepi8_epi16(load128(sc));
      __m256i isum[R];
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
DYNAMOE_UNROLL(2)
      for (int n = 0; n < 2; ++n) {
        const __m256i l0 = load(w + 64 * n), l1 = load(w + 64 * n + 32), h = load(w + 128 + 32 * n);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, nibble), _mm256_and_si256(_mm256_slli_epi16(h, 4), top));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, nibble), _mm256_and_si256(_mm256_slli_epi16(h, 2), top));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), nibble), _mm256_and_si256(h, top));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), nibble),
                               _mm256_and_si256(_mm256_srli_epi16(h, 2), top));
DYNAMOE_UNROLL(4)
        for (int m = 0; m < 4; ++m) {
          const int s = 8 * n + 2 * m;  // the scales of values 0-15 and 16-31 of these 32
          const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(sc[s + 1]), _mm_set1_epi16(sc[s]));
DYNAMOE_UNROLL(8)
          for (int r = 0; r < R; ++r) {
            const uint8_t* qa = job.rows[r] + 256 * blk + 128 * n + 32 * m;
            isum[r] = addProducts16<R>(isum[r], _mm256_maddubs_epi16(q[m], load(qa)), scale);
          }
        }
      }
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        // Codes are stored plus 32: subtract 32 x sum of scale x (the 16-value sums).
        const __m256i offsets = _mm256_madd_epi16(load(job.rows[r] + sumsOffset + 32 * blk), scales);
        const __m256i total = _mm256_sub_epi32(isum[r], _mm256_slli_epi32(offsets, 5));
        const float da = scaleOf(job.rows[r], job.k, blk);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(d * da), acc[r]);
      }
    }
DYNAMOE_UNROLL(8)
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
      case QuantType::Q5_K: return columns<R>(job, [&](const uint8_t* w, float* out) { q4k<R, true>(job, w, out); });
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


#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// The same dot products in 512-bit registers (AVX512-VNNI with AVX512BW). Q8_0, Q4_0, MXFP4, Q4_K and Q5_K put 16
// weight rows in the lanes (smallLanes, kLanes): each block's exact integer sums for 16 weight rows at once, then
// one float step per block (or sub-block) for all 16. Q6_K keeps one weight row at a time, 64 values a register.
// Each type's arithmetic is the same for every row count (batch invariance); it differs from the AVX2 kernels'.
struct QuantInt512 {
  using Narrow = QuantInt256<Dot256::Vnni512>;
  template <int R>
  static inline void fetchAhead(const uint8_t* w) {
    Narrow::fetchAhead<R>(w);
  }
  static inline __m512i load(const void* p) { return _mm512_loadu_si512(p); }
  static inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static inline const float* scalesOf(const uint8_t* row, int k) {
    return reinterpret_cast<const float*>(row + actScalesOffset(k));
  }

  // Q8_0, Q4_0 and MXFP4 weights with the columns in the lanes: 16 weight rows at a time, each 32-value block's signed
  // codes transposed so that register q holds codes 4q .. 4q + 3 of weight row c in dword lane c. A row's block is
  // then 8 vpdpbusd with the activation's 4 bytes broadcast, giving the 16 weight rows' exact block sums at once, and
  // one float step per block for all 16 (scale = weight scale x activation scale, then a fused multiply-add): a
  // block's float work is spread over 16 weight rows instead of repeated for each.
  // Every row count runs this same arithmetic (batch invariance): per weight row and block, the exact integer sum
  // S, then acc = fma(float(S), dw x da, acc) in block order; float(S) is exact (|S| <= 32 x 128 x 127 < 2^24).
  static constexpr int kLaneRows = 16;
  // The 4 bytes at p in every dword lane, broadcast straight from memory (one wider load would broadcast from a
  // general register, an extra shuffle).
  static inline __m512i broadcastQuad(const void* p) {
    int32_t quad;
    std::memcpy(&quad, p, sizeof quad);
    return _mm512_set1_epi32(quad);
  }
  static constexpr int kPrefetchAhead = 1024;  // bytes ahead in each of the 16 weight rows

  // The 32 bytes at w[c] + at of the 16 rows (8 dwords each) transposed into codes[q] (lane c: dword q of row c).
  // Row c sits in the low half and row c + 8 in the high half of pair c; an 8 x 8 dword transpose in each half does
  // the rest.
  static inline void transpose16x8(const uint8_t* const (&w)[kLaneRows], size_t at, __m512i (&codes)[8]) {
    __m512i pair[8];
DYNAMOE_UNROLL(8)
    for (int c = 0; c < 8; ++c) {
      pair[c] = _mm512_inserti64x4(_mm512_castsi256_si512(load256(w[c] + at)), load256(w[c + 8] + at), 1);
    }
    __m512i t[8], u[8];
DYNAMOE_UNROLL(4)
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm512_unpacklo_epi32(pair[2 * i], pair[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_epi32(pair[2 * i], pair[2 * i + 1]);
    }
DYNAMOE_UNROLL(2)
    for (int i = 0; i < 2; ++i) {
      u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
      u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
      u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
      u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    // Now u[j] (j < 4) holds in its 128-bit lanes: dword j of rows 0-3, dword 4 + j of rows 0-3, dword j of rows
    // 8-11, dword 4 + j of rows 8-11; u[4 + j] the same of rows 4-7 and 12-15. Register j takes lanes 0 and 2 of both
    // (dword j of rows 0-3, 4-7, 8-11, 12-15), register 4 + j their lanes 1 and 3.
    const __m512i lowHalves = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
    const __m512i highHalves = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
DYNAMOE_UNROLL(4)
    for (int j = 0; j < 4; ++j) {
      codes[j] = _mm512_permutex2var_epi64(u[j], lowHalves, u[4 + j]);
      codes[4 + j] = _mm512_permutex2var_epi64(u[j], highHalves, u[4 + j]);
    }
  }

  // Q4_0 and MXFP4: the 16 code bytes of each row (4 dwords; byte j holds codes j and 16 + j) transposed 4 x 4 in
  // each 128-bit lane (register k holds rows k, 4 + k, 8 + k, 12 + k), so raw[i] lane c is dword i of row c; its low
  // nibbles are then codes 4i .. 4i + 3 (codes[i]) and its high nibbles codes 16 + 4i .. (codes[4 + i]).
  template <QuantType T>
  static inline void transposeNibbles(const uint8_t* const (&w)[kLaneRows], size_t at, __m512i (&codes)[8]) {
    constexpr int kCodes = T == QuantType::Q4_0 ? 2 : 1;  // after the scale
    __m512i raw[4];
    transpose16x4(w, at + kCodes, raw);
    const __m512i nibble = _mm512_set1_epi8(0x0F);
DYNAMOE_UNROLL(4)
    for (int i = 0; i < 4; ++i) {
      const __m512i low = _mm512_and_si512(raw[i], nibble);
      const __m512i high = _mm512_and_si512(_mm512_srli_epi16(raw[i], 4), nibble);
      if constexpr (T == QuantType::Q4_0) {
        codes[i] = _mm512_sub_epi8(low, _mm512_set1_epi8(8));
        codes[4 + i] = _mm512_sub_epi8(high, _mm512_set1_epi8(8));
      } else {
        const __m512i table =
            _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
        codes[i] = _mm512_shuffle_epi8(table, low);
        codes[4 + i] = _mm512_shuffle_epi8(table, high);
      }
    }
  }

  // The weight rows of lanes first .. first + 15 (lanes past the job's columns repeat its last row; their sums are
  // never stored).
  static inline void laneRows(const QuantIntJob& job, int first, const uint8_t* (&w)[kLaneRows]) {
DYNAMOE_UNROLL(16)
    for (int c = 0; c < kLaneRows; ++c) {
      w[c] = job.weights + static_cast<size_t>(std::min(first + c, job.columns - 1)) * job.weightStride;
    }
  }

  // acc[r] lane c is the sum of row r with weight row first + c: stored at out[(first + c) * kQuantIntRows + r].
  template <int R>
  static inline void storeLanes(const QuantIntJob& job, int first, const __m512 (&acc)[R]) {
    const int lanes = std::min(kLaneRows, job.columns - first);
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      alignas(64) float sums[kLaneRows];
      _mm512_store_ps(sums, acc[r]);
      for (int c = 0; c < lanes; ++c) job.out[(first + c) * kQuantIntRows + r] = sums[c];
    }
  }

  // The transposed codes of block `blk` of weight rows w[0..15], their scales, and -128 x each row's code sum (the
  // activations are stored plus 128, so the dot products start from that correction).
  template <QuantType T>
  static inline void blockLanes(const uint8_t* const (&w)[kLaneRows], int blk, __m512i (&codes)[8], __m512* dw,
                                __m512i* start) {
    constexpr int kBytes = T == QuantType::Q8_0 ? 34 : T == QuantType::Q4_0 ? 18 : 17;
    const size_t at = static_cast<size_t>(blk) * kBytes;
    if constexpr (T == QuantType::Q8_0) {
      transpose16x8(w, at + 2, codes);  // Q8_0: the codes after the scale
    } else {
      transposeNibbles<T>(w, at, codes);
    }
    if constexpr (T == QuantType::MXFP4) {
      // E8M0 e -> 2^(e - 128) (halved for the doubled value table): exponent bits e - 1, or a subnormal for e < 2.
      alignas(16) uint8_t exponents[kLaneRows];
      for (int c = 0; c < kLaneRows; ++c) exponents[c] = w[c][at];
      const __m512i e = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(exponents)));
      const __m512i normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
      const __m512i tiny = _mm512_srlv_epi32(_mm512_set1_epi32(0x00400000), _mm512_sub_epi32(_mm512_set1_epi32(1), e));
      const __mmask16 normalLanes = _mm512_cmpge_epi32_mask(e, _mm512_set1_epi32(2));
      *dw = _mm512_castsi512_ps(_mm512_mask_blend_epi32(normalLanes, tiny, normal));
    } else {
      alignas(32) uint16_t halves[kLaneRows];
      for (int c = 0; c < kLaneRows; ++c) std::memcpy(&halves[c], w[c] + at, sizeof(uint16_t));
      *dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(halves)));
    }
    // Two chains of 4: a one-row job (decode) waits on this latency.
    __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
DYNAMOE_UNROLL(4)
    for (int q = 0; q < 8; q += 2) {
      even = _mm512_dpbusd_epi32(even, _mm512_set1_epi8(-128), codes[q]);
      odd = _mm512_dpbusd_epi32(odd, _mm512_set1_epi8(-128), codes[q + 1]);
    }
    *start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_add_epi32(even, odd));
  }

  template <QuantType T, int R>
  static inline void smallLanes(const QuantIntJob& job) {
    const int blocks = job.k / 32;
    for (int first = 0; first < job.columns; first += kLaneRows) {
      const uint8_t* w[kLaneRows];
      laneRows(job, first, w);
      __m512 acc[R];
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
      for (int blk = 0; blk < blocks; ++blk) {
        if constexpr (R <= 2) {
          // 16 weight rows stream side by side, more than the hardware prefetcher follows: fetch each ahead.
          if (blk % 2 == 0) {
            constexpr int kBytes = T == QuantType::Q8_0 ? 34 : T == QuantType::Q4_0 ? 18 : 17;
DYNAMOE_UNROLL(16)
            for (int c = 0; c < kLaneRows; ++c) {
              _mm_prefetch(reinterpret_cast<const char*>(w[c]) + static_cast<size_t>(blk) * kBytes + kPrefetchAhead,
                           _MM_HINT_T0);
            }
          }
        }
        __m512i codes[8], start;
        __m512 dw;
        blockLanes<T>(w, blk, codes, &dw, &start);
DYNAMOE_UNROLL(8)
        for (int r = 0; r < R; ++r) {
          const uint8_t* a = job.rows[r] + 32 * blk;
          __m512i even = start, odd = _mm512_setzero_si512();  // two chains of 4 (integer sums: any order)
DYNAMOE_UNROLL(4)
          for (int q = 0; q < 8; q += 2) {
            even = _mm512_dpbusd_epi32(even, broadcastQuad(a + 4 * q), codes[q]);
            odd = _mm512_dpbusd_epi32(odd, broadcastQuad(a + 4 * q + 4), codes[q + 1]);
          }
          const __m512i sum = _mm512_add_epi32(even, odd);
          const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(scalesOf(job.rows[r], job.k)[blk]));
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[r]);
        }
      }
      storeLanes(job, first, acc);
    }
  }

  // Q4_K and Q5_K with the weight rows in the lanes, as smallLanes: per 256-value block, the 12 packed bytes of the 16
  // rows' 8 sub-block scales and mins are unpacked (as ggml does) and transposed, so sub-block s has a vector of
  // d x scale and one of its min (as an int16 pair, for vpdpwssd against the activations' 16-value sums); each pair of
  // sub-blocks' 32 code bytes is transposed like Q8_0's codes, its low nibbles the first sub-block, its high nibbles
  // the second (Q5_K: the fifth bits from the transposed qh). For a row and sub-block, 8 vpdpbusd give the exact sums
  // of the 16 weight rows; then acc += float(S) x (d x scale x da), sub-block by sub-block, and at the block's end
  // acc -= float(min sums) x (dmin x da). Every row count runs this arithmetic (batch invariance).
  template <int R, bool Five>
  static inline void kLanes(const QuantIntJob& job) {
    constexpr int kBytes = Five ? 176 : 144;
    constexpr int kCodes = Five ? 48 : 16;
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    for (int first = 0; first < job.columns; first += kLaneRows) {
      const uint8_t* w[kLaneRows];
      laneRows(job, first, w);
      __m512 acc[R];
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
      for (int blk = 0; blk < blocks; ++blk) {
        const size_t at = static_cast<size_t>(blk) * kBytes;
        if constexpr (R <= 2) {
DYNAMOE_UNROLL(16)
          for (int c = 0; c < kLaneRows; ++c) {
            for (int line = 0; line < kBytes; line += 64) {
              _mm_prefetch(reinterpret_cast<const char*>(w[c]) + at + line + kPrefetchAhead, _MM_HINT_T0);
            }
          }
        }
        // The block's first 16 bytes of the 16 rows, transposed: head[0] lane c = row c's d | dmin << 16, head[1..3]
        // its 12 packed scale bytes; unpacked as ggml does, 16 rows at once, into scales 0-3, 4-7, mins 0-3, 4-7.
        __m512i head[4];
        transpose16x4(w, at, head);
        const __m512i six = _mm512_set1_epi8(0x3f), four = _mm512_set1_epi8(0x0f), two = _mm512_set1_epi8(0x03);
        // The top 2 bits of scales and mins 0-3 (bits 6-7 of their bytes) are bits 4-5 of scales and mins 4-7.
        const __m512i scalesTop = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(head[1], 6), two), 4);
        const __m512i minsTop = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(head[2], 6), two), 4);
        const __m512i packed[4] = {_mm512_and_si512(head[1], six),
                                   _mm512_or_si512(_mm512_and_si512(head[3], four), scalesTop),
                                   _mm512_and_si512(head[2], six),
                                   _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(head[3], 4), four), minsTop)};
        const __m512 dv = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head[0]));
        const __m512 dminv = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(head[0], 16)));
        __m512 subScale[8];
        __m512i subMin[8];
DYNAMOE_UNROLL(8)
        for (int sb = 0; sb < 8; ++sb) {
          const __m512i byte = _mm512_set1_epi32(0xFF);
          const __m512i sc = _mm512_and_si512(_mm512_srli_epi32(packed[sb / 4], 8 * (sb % 4)), byte);
          const __m512i mn = _mm512_and_si512(_mm512_srli_epi32(packed[2 + sb / 4], 8 * (sb % 4)), byte);
          subScale[sb] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(sc));
          subMin[sb] = _mm512_or_si512(mn, _mm512_slli_epi32(mn, 16));  // [min, min] as two int16
        }
        __m512i high[8];
        if constexpr (Five) transpose16x8(w, at + 16, high);
        float da[R];
DYNAMOE_UNROLL(8)
        for (int r = 0; r < R; ++r) da[r] = scalesOf(job.rows[r], job.k)[blk];
DYNAMOE_UNROLL(1)
        for (int j = 0; j < 4; ++j) {
          __m512i raw[8], codes[2][8];
          transpose16x8(w, at + kCodes + 32 * j, raw);
DYNAMOE_UNROLL(8)
          for (int q = 0; q < 8; ++q) {
            codes[0][q] = _mm512_and_si512(raw[q], nibble);
            codes[1][q] = _mm512_and_si512(_mm512_srli_epi16(raw[q], 4), nibble);
            if constexpr (Five) {
              // Bit 2j of each qh byte is the fifth bit of the low sub-block's value, bit 2j + 1 of the high one's.
              const __m512i one = _mm512_set1_epi8(1);
              const __m512i lowBit = _mm512_and_si512(_mm512_srli_epi16(high[q], 2 * j), one);
              const __m512i highBit = _mm512_and_si512(_mm512_srli_epi16(high[q], 2 * j + 1), one);
              codes[0][q] = _mm512_or_si512(codes[0][q], _mm512_slli_epi16(lowBit, 4));
              codes[1][q] = _mm512_or_si512(codes[1][q], _mm512_slli_epi16(highBit, 4));
            }
          }
DYNAMOE_UNROLL(8)
          for (int r = 0; r < R; ++r) {
            const int8_t* a = reinterpret_cast<const int8_t*>(job.rows[r]) + 256 * blk + 64 * j;
DYNAMOE_UNROLL(2)
            for (int half = 0; half < 2; ++half) {
              __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
DYNAMOE_UNROLL(4)
              for (int q = 0; q < 8; q += 2) {
                even = _mm512_dpbusd_epi32(even, codes[half][q], broadcastQuad(a + 32 * half + 4 * q));
                odd = _mm512_dpbusd_epi32(odd, codes[half][q + 1], broadcastQuad(a + 32 * half + 4 * q + 4));
              }
              const __m512 scale = _mm512_mul_ps(subScale[2 * j + half], _mm512_set1_ps(da[r]));
              acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)), scale, acc[r]);
            }
          }
        }
DYNAMOE_UNROLL(8)
        for (int r = 0; r < R; ++r) {
          // Each sub-block's min times its two 16-value activation sums (an int16 pair per dword): exact integers.
          const uint8_t* sums = job.rows[r] + sumsOffset + 32 * blk;
          __m512i minSums = _mm512_setzero_si512();
DYNAMOE_UNROLL(8)
          for (int sb = 0; sb < 8; ++sb) {
            minSums = _mm512_dpwssd_epi32(minSums, subMin[sb], broadcastQuad(sums + 4 * sb));
          }
          acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(minSums), _mm512_mul_ps(dminv, _mm512_set1_ps(da[r])), acc[r]);
        }
      }
      storeLanes(job, first, acc);
    }
  }

  // The 16 bytes at w[c] + at of the 16 rows (4 dwords each) transposed 4 x 4 in each 128-bit lane (register k
  // holds rows k, 4 + k, 8 + k, 12 + k): out[i] lane c is dword i of row c.
  static inline void transpose16x4(const uint8_t* const (&w)[kLaneRows], size_t at, __m512i (&out)[4]) {
    __m512i v[4];
DYNAMOE_UNROLL(4)
    for (int k = 0; k < 4; ++k) {
      __m512i r = _mm512_castsi128_si512(Narrow::load128(w[k] + at));
      r = _mm512_inserti32x4(r, Narrow::load128(w[4 + k] + at), 1);
      r = _mm512_inserti32x4(r, Narrow::load128(w[8 + k] + at), 2);
      v[k] = _mm512_inserti32x4(r, Narrow::load128(w[12 + k] + at), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]), t1 = _mm512_unpackhi_epi32(v[0], v[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(v[2], v[3]), t3 = _mm512_unpackhi_epi32(v[2], v[3]);
    out[0] = _mm512_unpacklo_epi64(t0, t2);
    out[1] = _mm512_unpackhi_epi64(t0, t2);
    out[2] = _mm512_unpacklo_epi64(t1, t3);
    out[3] = _mm512_unpackhi_epi64(t1, t3);
  }

  template <int R>
  static inline void q6k(const QuantIntJob& job, const uint8_t* w, float* out) {
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    __m512 acc[R];
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const __m512i two = _mm512_set1_epi8(0x03);
    // Shifts of the high bits: values 0-31 of a half take bits 0-1 of qh, 32-63 bits 2-3, 64-95 4-5, 96-127 6-7.
    const __m512i shiftLow = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i shiftHigh = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    for (int blk = 0; blk < blocks; ++blk, w += 210) {
      fetchAhead<R>(w);
      fetchAhead<R>(w + 64);
      fetchAhead<R>(w + 128);
      fetchAhead<R>(w + 192);
      const __m512 dScale = _mm512_set1_ps(Narrow::half(w + 208));
      const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192)));
      const __m512i scales = _mm512_zextsi256_si512(scales16);
      __m512i codes[4], scale[4];
DYNAMOE_UNROLL(2)
      for (int n = 0; n < 2; ++n) {
        const __m512i l = load(w + 64 * n);
        const __m512i h = _mm512_broadcast_i64x4(load256(w + 128 + 32 * n));
        const __m512i hLow = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(h, shiftLow), two), 4);
        const __m512i hHigh = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(h, shiftHigh), two), 4);
        codes[2 * n] = _mm512_or_si512(_mm512_and_si512(l, nibble), hLow);  // values 128n .. 128n + 63
        codes[2 * n + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), nibble), hHigh);  // + 64 .. + 127
        // 16-bit lanes 8m .. 8m + 7 of these 64 values take scale 8n + 4 part + m.
        for (int part = 0; part < 2; ++part) {
          const int s0 = 8 * n + 4 * part;
          const __m512i index = _mm512_set_epi16(s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3,
                                                 s0 + 2, s0 + 2, s0 + 2, s0 + 2, s0 + 2, s0 + 2, s0 + 2, s0 + 2,
                                                 s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1,
                                                 s0, s0, s0, s0, s0, s0, s0, s0);
          scale[2 * n + part] = _mm512_permutexvar_epi16(index, scales);
        }
      }
DYNAMOE_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        const uint8_t* q = job.rows[r] + 256 * blk;
        __m512i isum = _mm512_setzero_si512();
DYNAMOE_UNROLL(4)
        for (int c = 0; c < 4; ++c) isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(codes[c], load(q + 64 * c)), scale[c]);
        // Codes are stored plus 32: subtract 32 x sum of scale x (the 16-value sums).
        const __m256i offsets = _mm256_madd_epi16(load256(job.rows[r] + sumsOffset + 32 * blk), scales16);
        const __m512i total = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(offsets, 5)));
        const __m512 block = _mm512_mul_ps(dScale, _mm512_cvtepi32_ps(total));
        acc[r] = _mm512_fmadd_ps(block, _mm512_set1_ps(scalesOf(job.rows[r], job.k)[blk]), acc[r]);
      }
    }
DYNAMOE_UNROLL(8)
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
  }

  template <int R>
  static void rows(const QuantIntJob& job) {
    auto columns = [&](auto&& column) {
      for (int c = 0; c < job.columns; ++c) column(job.weights + c * job.weightStride, job.out + c * kQuantIntRows);
    };
    switch (job.type) {
      case QuantType::Q8_0: return smallLanes<QuantType::Q8_0, R>(job);
      case QuantType::Q4_0: return smallLanes<QuantType::Q4_0, R>(job);
      case QuantType::MXFP4: return smallLanes<QuantType::MXFP4, R>(job);
      case QuantType::Q4_K: return kLanes<R, false>(job);
      case QuantType::Q5_K: return kLanes<R, true>(job);
      case QuantType::Q6_K: return columns([&](const uint8_t* w, float* out) { q6k<R>(job, w, out); });
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
#endif
}  // namespace
}  // namespace dynamoe::cpu
