// Dot products of quantized weight rows with f32 activation rows over a SIMD register type V (simd_avx2.h,
// simd_avx512.h). Each block is decoded in registers: its codes 16 at a time as int8 lanes (byte shuffles and
// masks), widened to f32, times the sub-block's scale (plus its min), then every activation row takes the values.
// A row's lanes add k = lane (mod kLanes) in order and are summed in the family's one order at the end, whatever
// the number of rows (batch invariance). Internal linkage: each ISA file gets its own copy.
#pragma once

#include <immintrin.h>

#include <utility>

#include "../core/quant.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {
namespace {

// 16 bytes of `bytes` from `p` (any alignment).
inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
// The low (high) nibbles of 16 bytes.
inline __m128i lowNibbles(__m128i x) { return _mm_and_si128(x, _mm_set1_epi8(0x0F)); }
inline __m128i highNibbles(__m128i x) { return _mm_and_si128(_mm_srli_epi16(x, 4), _mm_set1_epi8(0x0F)); }
// Bits (x >> shift) & mask of every byte (shift < 8).
inline __m128i bitsOf(__m128i x, int shift, int mask) {
  return _mm_and_si128(_mm_srl_epi16(x, _mm_cvtsi32_si128(shift)), _mm_set1_epi8(static_cast<char>(mask)));
}
// Byte j of the result = 0x10 when bit (first + j) of the 32 bits `bits` is set, else 0 (j < 16).
inline __m128i bitsToFives(uint32_t bits, int first) {
  const uint32_t part = bits >> first;
  const __m128i bytes = _mm_set_epi8(static_cast<char>(part >> 8), static_cast<char>(part >> 8), static_cast<char>(part >> 8),
                                     static_cast<char>(part >> 8), static_cast<char>(part >> 8), static_cast<char>(part >> 8),
                                     static_cast<char>(part >> 8), static_cast<char>(part >> 8), static_cast<char>(part),
                                     static_cast<char>(part), static_cast<char>(part), static_cast<char>(part),
                                     static_cast<char>(part), static_cast<char>(part), static_cast<char>(part),
                                     static_cast<char>(part));
  const __m128i select = _mm_set_epi8(-128, 64, 32, 16, 8, 4, 2, 1, -128, 64, 32, 16, 8, 4, 2, 1);
  const __m128i set = _mm_cmpeq_epi8(_mm_and_si128(bytes, select), select);
  return _mm_and_si128(set, _mm_set1_epi8(0x10));
}
// A 16-entry int8 table looked up by the nibbles in x.
inline __m128i lookup(const int8_t* table, __m128i nibbles) {
  return _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table)), nibbles);
}
inline uint32_t loadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <class V>
struct SimdQuantDot {
  using Reg = typename V::Reg;
  static constexpr int L = V::kLanes;
  static constexpr int kRegs16 = 16 / L;  // registers that hold 16 values

  // 16 int8 codes widened to f32, times `scale`, plus `offset`.
  static void widen(__m128i codes, float scale, float offset, Reg (&out)[kRegs16]) {
    const Reg s = V::set1(scale), o = V::set1(offset);
    if constexpr (L == 16) {
      out[0] = V::fmadd(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes)), s, o);
    } else {
      out[0] = V::fmadd(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes)), s, o);
      out[1] = V::fmadd(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(codes, 8))), s, o);
    }
  }

  // Calls chunk(codes, scale, offset, k) for the block's values k .. k + 15, in order: value = code * scale + offset.
  template <class Chunk>
  static void decode(QuantType type, const uint8_t* b, Chunk&& chunk) {
    using namespace quant_detail;
    switch (type) {
      case QuantType::Q8_0: {
        const float d = half(b);
        chunk(load16(b + 2), d, 0.0f, 0);
        chunk(load16(b + 18), d, 0.0f, 16);
        return;
      }
      case QuantType::Q4_0:
      case QuantType::Q4_1: {
        const bool withMin = type == QuantType::Q4_1;
        const float d = half(b);
        const float offset = withMin ? half(b + 2) : 0.0f;
        const __m128i qs = load16(b + (withMin ? 4 : 2));
        const __m128i bias = _mm_set1_epi8(withMin ? 0 : 8);  // Q4_0 codes are centred on 8
        chunk(_mm_sub_epi8(lowNibbles(qs), bias), d, offset, 0);
        chunk(_mm_sub_epi8(highNibbles(qs), bias), d, offset, 16);
        return;
      }
      case QuantType::Q5_0:
      case QuantType::Q5_1: {
        const bool withMin = type == QuantType::Q5_1;
        const float d = half(b);
        const float offset = withMin ? half(b + 2) : 0.0f;
        const uint32_t qh = loadU32(b + (withMin ? 4 : 2));
        const __m128i qs = load16(b + (withMin ? 8 : 6));
        const __m128i bias = _mm_set1_epi8(withMin ? 0 : 16);  // Q5_0 codes are centred on 16
        chunk(_mm_sub_epi8(_mm_or_si128(lowNibbles(qs), bitsToFives(qh, 0)), bias), d, offset, 0);
        chunk(_mm_sub_epi8(_mm_or_si128(highNibbles(qs), bitsToFives(qh, 16)), bias), d, offset, 16);
        return;
      }
      case QuantType::IQ4_NL: {
        const float d = half(b);
        const __m128i qs = load16(b + 2);
        chunk(lookup(kIq4Values, lowNibbles(qs)), d, 0.0f, 0);
        chunk(lookup(kIq4Values, highNibbles(qs)), d, 0.0f, 16);
        return;
      }
      case QuantType::MXFP4: {
        const float d = std::ldexp(1.0f, static_cast<int>(b[0]) - 128);
        const __m128i qs = load16(b + 1);
        chunk(lookup(kMxfp4Values, lowNibbles(qs)), d, 0.0f, 0);
        chunk(lookup(kMxfp4Values, highNibbles(qs)), d, 0.0f, 16);
        return;
      }
      case QuantType::IQ4_XS: {
        const float d = half(b);
        const int scalesHigh = b[2] | (b[3] << 8);
        for (int ib = 0; ib < 8; ++ib) {
          const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scalesHigh >> (2 * ib)) & 3) << 4);
          const float dl = d * static_cast<float>(ls - 32);
          const __m128i qs = load16(b + 8 + 16 * ib);
          chunk(lookup(kIq4Values, lowNibbles(qs)), dl, 0.0f, 32 * ib);
          chunk(lookup(kIq4Values, highNibbles(qs)), dl, 0.0f, 32 * ib + 16);
        }
        return;
      }
      case QuantType::Q4_K:
      case QuantType::Q5_K: {
        const bool five = type == QuantType::Q5_K;
        const float d = half(b), dmin = half(b + 2);
        const uint8_t* qh = b + 16;
        const uint8_t* q = b + (five ? 48 : 16);
        for (int j = 0; j < 4; ++j, q += 32) {
          for (int part = 0; part < 2; ++part) {  // low nibbles, then high nibbles, of the 32 bytes
            int sc, mn;
            scaleMin(2 * j + part, b + 4, &sc, &mn);
            const float scale = d * static_cast<float>(sc), offset = -dmin * static_cast<float>(mn);
            for (int half16 = 0; half16 < 2; ++half16) {
              const __m128i bytes = load16(q + 16 * half16);
              __m128i codes = part == 0 ? lowNibbles(bytes) : highNibbles(bytes);
              if (five) codes = _mm_or_si128(codes, _mm_slli_epi16(bitsOf(load16(qh + 16 * half16), 2 * j + part, 1), 4));
              chunk(codes, scale, offset, 64 * j + 32 * part + 16 * half16);
            }
          }
        }
        return;
      }
      case QuantType::Q6_K: {
        const float d = half(b + 208);
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        const __m128i bias = _mm_set1_epi8(32);
        for (int n = 0; n < 2; ++n) {
          const uint8_t* ql = b + 64 * n;
          const uint8_t* qh = b + 128 + 32 * n;
          for (int half16 = 0; half16 < 2; ++half16) {
            const int l = 16 * half16;
            const __m128i low = load16(ql + l), low32 = load16(ql + l + 32), high = load16(qh + l);
            const __m128i q1 = _mm_or_si128(lowNibbles(low), _mm_slli_epi16(bitsOf(high, 0, 3), 4));
            const __m128i q2 = _mm_or_si128(lowNibbles(low32), _mm_slli_epi16(bitsOf(high, 2, 3), 4));
            const __m128i q3 = _mm_or_si128(highNibbles(low), _mm_slli_epi16(bitsOf(high, 4, 3), 4));
            const __m128i q4 = _mm_or_si128(highNibbles(low32), _mm_slli_epi16(bitsOf(high, 6, 3), 4));
            const int8_t* s = sc + 8 * n + half16;
            chunk(_mm_sub_epi8(q1, bias), d * s[0], 0.0f, 128 * n + l);
            chunk(_mm_sub_epi8(q2, bias), d * s[2], 0.0f, 128 * n + l + 32);
            chunk(_mm_sub_epi8(q3, bias), d * s[4], 0.0f, 128 * n + l + 64);
            chunk(_mm_sub_epi8(q4, bias), d * s[6], 0.0f, 128 * n + l + 96);
          }
        }
        return;
      }
      case QuantType::Q2_K: {
        const float d = half(b + 80), dmin = half(b + 82);
        int is = 0;
        for (int n = 0; n < 2; ++n) {
          const uint8_t* q = b + 16 + 32 * n;
          for (int shift = 0; shift < 8; shift += 2) {
            for (int half16 = 0; half16 < 2; ++half16) {
              const int sc = b[is];
              chunk(bitsOf(load16(q + 16 * half16), shift, 3), d * static_cast<float>(sc & 0xF),
                    -dmin * static_cast<float>(sc >> 4), 16 * is);
              ++is;
            }
          }
        }
        return;
      }
      case QuantType::Q3_K: {
        const float d = half(b + 108);
        const uint8_t* packed = b + 96;
        int is = 0;
        int bit = 0;
        for (int n = 0; n < 2; ++n) {
          const uint8_t* q = b + 32 + 32 * n;
          for (int shift = 0; shift < 8; shift += 2, ++bit) {
            for (int half16 = 0; half16 < 2; ++half16) {
              const int low = is < 8 ? packed[is] & 0xF : packed[is - 8] >> 4;
              const int high = (packed[8 + is % 4] >> (2 * (is / 4))) & 3;
              const float scale = d * static_cast<float>((low | (high << 4)) - 32);
              const __m128i mask = _mm_set1_epi8(static_cast<char>(1 << bit));
              const __m128i clear = _mm_cmpeq_epi8(_mm_and_si128(load16(b + 16 * half16), mask), _mm_setzero_si128());
              const __m128i codes =
                  _mm_sub_epi8(bitsOf(load16(q + 16 * half16), shift, 3), _mm_and_si128(clear, _mm_set1_epi8(4)));
              chunk(codes, scale, 0.0f, 16 * is);
              ++is;
            }
          }
        }
        return;
      }
      case QuantType::None: return;
    }
  }

  template <int R>
  static void rows(const QuantJob& job) {
    const QuantTraits traits = quantTraits(job.type);
    Reg acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = V::zero();
    const uint8_t* weights = job.weights;
    for (int c = 0; c < job.k; c += traits.blockElements, weights += traits.blockBytes) {
      decode(job.type, weights, [&](__m128i codes, float scale, float offset, int k) {
        Reg w[kRegs16];
        widen(codes, scale, offset, w);
#pragma GCC unroll 2
        for (int i = 0; i < kRegs16; ++i) {
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r] = V::fmadd(w[i], V::load(job.rows[r] + c + k + i * L), acc[r]);
        }
      });
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) job.out[r] = V::sum(acc[r]);
  }

  template <size_t... Index>
  static void byRows(const QuantJob& job, std::index_sequence<Index...>) {
    static constexpr QuantDotFn table[] = {&rows<static_cast<int>(Index) + 1>...};
    table[job.rowCount - 1](job);
  }

  static void run(const QuantJob& job) { byRows(job, std::make_index_sequence<kQuantRows>{}); }
};

}  // namespace
}  // namespace dynamoe::cpu
