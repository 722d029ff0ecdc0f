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

#include <cstring>
#include <utility>

#include "quant_int.h"

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
      if (blk % 2 == 0) fetchAhead<R>(w);
      float dw;
      const __m256i codes = smallCodes<T>(w, &dw);
      const __m256i magnitudes = _mm256_sign_epi8(codes, codes);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256i a = _mm256_xor_si256(load(job.rows[r] + 32 * blk), _mm256_set1_epi8(-128));  // stored q + 128
        const __m256i s = dotBytes(magnitudes, _mm256_sign_epi8(a, codes));
        const float scale = dw * scaleOf(job.rows[r], job.k, blk);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(scale), acc[r]);
      }
    }
#pragma GCC unroll 8
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
#pragma GCC unroll 8
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
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 4
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
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const uint8_t* q = job.rows[r] + 256 * blk + 64 * j;
          isum[r] = addProducts16<R>(isum[r], _mm256_maddubs_epi16(lo, load(q)), scLo);
          isum[r] = addProducts16<R>(isum[r], _mm256_maddubs_epi16(hi, load(q + 32)), scHi);
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
      fetchAhead<R>(w);
      fetchAhead<R>(w + 64);
      fetchAhead<R>(w + 128);
      fetchAhead<R>(w + 192);
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
            isum[r] = addProducts16<R>(isum[r], _mm256_maddubs_epi16(q[m], load(qa)), scale);
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
// The same dot products in 512-bit registers (AVX512-VNNI with AVX512BW): a register holds two 32-value blocks of
// Q8_0, Q4_0 and MXFP4, or 64 values of a Q4_K / Q6_K super-block, so each row's integer sums take half the
// instructions. The exact integers, the per-block scaling and the one order of each row's additions are as above.
struct QuantInt512 {
  using Narrow = QuantInt256<Dot256::Vnni512>;
  template <int R>
  static inline void fetchAhead(const uint8_t* w) {
    Narrow::fetchAhead<R>(w);
  }
  static inline __m512i load(const void* p) { return _mm512_loadu_si512(p); }
  static inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  // 32 bytes at p, then 32 bytes at q.
  static inline __m512i loadPair(const uint8_t* p, const uint8_t* q) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(p)), load256(q), 1);
  }
  static inline __m512i dotBytes(__m512i u, __m512i s) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s); }
  static inline const float* scalesOf(const uint8_t* row, int k) {
    return reinterpret_cast<const float*>(row + actScalesOffset(k));
  }

  // The signed codes of blocks b and b + 1 at w (zeros and scale 0 for b + 1 when `two` is false), their scales
  // (lanes 0-7 and 8-15), and minus 128 x the sum of each lane's 4 codes: the activations are stored plus 128.
  // 2^(e - 128) for every E8M0 byte e (MXFP4's scale, halved for the doubled value table).
  static inline const float* e8m0Table() {
    static const struct Table {
      float values[256];
      Table() {
        for (int e = 0; e < 256; ++e) values[e] = Narrow::e8m0Half(e);
      }
    } table;
    return table.values;
  }

  template <QuantType T>
  static inline void smallPair(const uint8_t* w, bool two, __m512i* codes, __m512* scales, __m512i* offset) {
    constexpr int kBytes = T == QuantType::Q8_0 ? 34 : T == QuantType::Q4_0 ? 18 : 17;
    if constexpr (T == QuantType::MXFP4) {
      if (two) {
        // [bytes of block 0, bytes of block 1] -> 128-bit lanes [b0, b0, b1, b1] -> low, high, low, high nibbles.
        const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(Narrow::load128(w + 1)),
                                                     Narrow::load128(w + kBytes + 1), 1);
        const __m512i spread = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), _mm512_zextsi256_si512(both));
        const __m512i shifts = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0, 0x0004000400040004,
                                                0x0004000400040004, 0, 0);
        const __m512i nibbles = _mm512_and_si512(_mm512_srlv_epi16(spread, shifts), _mm512_set1_epi8(0x0F));
        const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
        *codes = _mm512_shuffle_epi8(table, nibbles);
        const float* values = e8m0Table();
        *scales = _mm512_insertf32x8(_mm512_set1_ps(values[w[0]]), _mm256_set1_ps(values[w[kBytes]]), 1);
        *offset = _mm512_sub_epi32(_mm512_setzero_si512(), dotBytes(_mm512_set1_epi8(-128), *codes));
        return;
      }
    }
    float d0, d1 = 0.0f;
    const __m256i c0 = Narrow::smallCodes<T>(w, &d0);
    const __m256i c1 = two ? Narrow::smallCodes<T>(w + kBytes, &d1) : _mm256_setzero_si256();
    *codes = _mm512_inserti64x4(_mm512_castsi256_si512(c0), c1, 1);
    *scales = _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1);
    *offset = _mm512_sub_epi32(_mm512_setzero_si512(), dotBytes(_mm512_set1_epi8(-128), *codes));
  }

  // C weight rows (1 or 2) at w[c] with R rows: each row's activations and scales are loaded once for the C rows.
  template <QuantType T, int R, int C>
  static inline void small(const QuantIntJob& job, const uint8_t* const (&w)[C], float* const (&out)[C]) {
    constexpr int kBytes = T == QuantType::Q8_0 ? 34 : T == QuantType::Q4_0 ? 18 : 17;
    const int blocks = job.k / 32;
    __m512 acc[C][R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) acc[c][r] = _mm512_setzero_ps();
    }
    // Lanes 0-7 take the first block's scale, 8-15 the second's.
    const __m512i pairIndex = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int blk = 0; blk < blocks; blk += 2) {
      const bool two = blk + 1 < blocks;  // an odd count's last block pairs with zeros
      const size_t at = static_cast<size_t>(blk) * kBytes;
      __m512i codes[C], offset[C];
      __m512 dw[C];
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) {
        fetchAhead<R>(w[c] + at);
        smallPair<T>(w[c] + at, two, &codes[c], &dw[c], &offset[c]);
      }
      const __mmask16 scaleLanes = two ? 0x3 : 0x1;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i a = load(job.rows[r] + 32 * blk);
        const __m512 da = _mm512_permutexvar_ps(pairIndex, _mm512_maskz_loadu_ps(scaleLanes, scalesOf(job.rows[r], job.k) + blk));
#pragma GCC unroll 2
        for (int c = 0; c < C; ++c) {
          const __m512i s = _mm512_dpbusd_epi32(offset[c], a, codes[c]);
          acc[c][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[c], da), acc[c][r]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) out[c][r] = _mm512_reduce_add_ps(acc[c][r]);
    }
  }

  // Every weight row of the job: two at a time where rows share the activations (R >= 3), else one at a time.
  template <QuantType T, int R>
  static inline void smallColumns(const QuantIntJob& job) {
    int c = 0;
    if constexpr (R >= 3) {
      for (; c + 2 <= job.columns; c += 2) {
        const uint8_t* const w[2] = {job.weights + c * job.weightStride, job.weights + (c + 1) * job.weightStride};
        float* const out[2] = {job.out + c * kQuantIntRows, job.out + (c + 1) * kQuantIntRows};
        small<T, R, 2>(job, w, out);
      }
    }
    for (; c < job.columns; ++c) {
      const uint8_t* const w[1] = {job.weights + c * job.weightStride};
      float* const out[1] = {job.out + c * kQuantIntRows};
      small<T, R, 1>(job, w, out);
    }
  }

  // 16-bit lanes i of the result = the scale at index[i / 16] of the 16-bit scales in `scales` (two per register).
  static inline __m512i spread(__m512i scales, int first, int second) {
    const __m512i index = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(first))),
                                             _mm256_set1_epi16(static_cast<short>(second)), 1);
    return _mm512_permutexvar_epi16(index, scales);
  }

  template <int R, bool Five = false>
  static inline void q4k(const QuantIntJob& job, const uint8_t* w, float* out) {
    constexpr int kBytes = Five ? 176 : 144;
    constexpr int kCodes = Five ? 48 : 16;
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    __m512 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    for (int blk = 0; blk < blocks; ++blk, w += kBytes) {
      fetchAhead<R>(w);
      fetchAhead<R>(w + 64);
      fetchAhead<R>(w + 128);
      if constexpr (Five) fetchAhead<R>(w + 175);
      const __m512 dScale = _mm512_set1_ps(Narrow::half(w)), dminScale = _mm512_set1_ps(Narrow::half(w + 2));
      uint32_t sm[4];
      std::memcpy(sm, w + 4, 12);
      sm[3] = ((sm[2] >> 4) & 0x0f0f0f0f) | (((sm[1] >> 6) & 0x03030303) << 4);
      const uint32_t low = sm[1] & 0x3f3f3f3f;
      sm[1] = (sm[2] & 0x0f0f0f0f) | (((sm[0] >> 6) & 0x03030303) << 4);
      sm[2] = low;
      sm[0] &= 0x3f3f3f3f;
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sm));  // scales 0-7, mins 0-7
      const __m512i scales = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(bytes));
      const __m128i minBytes = _mm_unpackhi_epi8(bytes, bytes);
      const __m256i mins = _mm256_cvtepu8_epi16(minBytes);  // min j at 16-bit lanes 2j, 2j+1
      // Bytes 32j .. 32j + 31 hold sub-blocks 2j (low nibbles) and 2j + 1 (high): both halves of a register take
      // them, the upper shifted by 4, so that it holds values 64j .. 64j + 63 in order.
      __m512i codes[4], scale[4];
      const __m512i shifts = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m512i bits = _mm512_broadcast_i64x4(load256(w + kCodes + 32 * j));
        codes[j] = _mm512_and_si512(_mm512_srlv_epi16(bits, shifts), nibble);
        if constexpr (Five) {
          // Bit 2j of qh is the fifth bit of sub-block 2j's values, bit 2j + 1 of 2j + 1's.
          const __m512i qh = _mm512_broadcast_i64x4(load256(w + 16));
          const __m512i bitShifts = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * j)),
                                                       _mm256_set1_epi16(static_cast<short>(2 * j + 1)), 1);
          const __m512i fifth = _mm512_and_si512(_mm512_srlv_epi16(qh, bitShifts), _mm512_set1_epi8(1));
          codes[j] = _mm512_or_si512(codes[j], _mm512_slli_epi16(fifth, 4));
        }
        scale[j] = spread(scales, 2 * j, 2 * j + 1);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const uint8_t* q = job.rows[r] + 256 * blk;
        __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(codes[j], load(q + 64 * j)), scale[j]);
        // da x (d x sums - dmin x min sums), the scales broadcast once per block (d, dmin) or from memory (da).
        const __m256i minSums = _mm256_madd_epi16(load256(job.rows[r] + sumsOffset + 32 * blk), mins);
        const __m512 block = _mm512_fnmadd_ps(dminScale, _mm512_zextps256_ps512(_mm256_cvtepi32_ps(minSums)),
                                              _mm512_mul_ps(dScale, _mm512_cvtepi32_ps(isum)));
        acc[r] = _mm512_fmadd_ps(block, _mm512_set1_ps(scalesOf(job.rows[r], job.k)[blk]), acc[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
  }

  template <int R>
  static inline void q6k(const QuantIntJob& job, const uint8_t* w, float* out) {
    const int blocks = job.k / 256;
    const size_t sumsOffset = actSumsOffset(ActQuant::Q8_K, job.k);
    __m512 acc[R];
#pragma GCC unroll 8
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
#pragma GCC unroll 2
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
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const uint8_t* q = job.rows[r] + 256 * blk;
        __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(codes[c], load(q + 64 * c)), scale[c]);
        // Codes are stored plus 32: subtract 32 x sum of scale x (the 16-value sums).
        const __m256i offsets = _mm256_madd_epi16(load256(job.rows[r] + sumsOffset + 32 * blk), scales16);
        const __m512i total = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(offsets, 5)));
        const __m512 block = _mm512_mul_ps(dScale, _mm512_cvtepi32_ps(total));
        acc[r] = _mm512_fmadd_ps(block, _mm512_set1_ps(scalesOf(job.rows[r], job.k)[blk]), acc[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
  }

  template <int R>
  static void rows(const QuantIntJob& job) {
    auto columns = [&](auto&& column) {
      for (int c = 0; c < job.columns; ++c) column(job.weights + c * job.weightStride, job.out + c * kQuantIntRows);
    };
    switch (job.type) {
      case QuantType::Q8_0: return smallColumns<QuantType::Q8_0, R>(job);
      case QuantType::Q4_0: return smallColumns<QuantType::Q4_0, R>(job);
      case QuantType::MXFP4: return smallColumns<QuantType::MXFP4, R>(job);
      case QuantType::Q4_K: return columns([&](const uint8_t* w, float* out) { q4k<R>(job, w, out); });
      case QuantType::Q5_K: return columns([&](const uint8_t* w, float* out) { q4k<R, true>(job, w, out); });
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
