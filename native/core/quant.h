// Quantized weight types of GGUF files (ggml's block formats) and their scalar dequantization, block by block.
// A quantized matrix is [rows][cols] with each row a run of cols / blockElements blocks, as in the file.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "dtype.h"

namespace dynamoe {

enum class QuantType { None, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4 };

struct QuantTraits {
  const char* name;
  int blockElements;
  int blockBytes;
};

inline QuantTraits quantTraits(QuantType t) {
  switch (t) {
    case QuantType::Q8_0: return {"q8_0", 32, 34};
    case QuantType::Q4_0: return {"q4_0", 32, 18};
    case QuantType::Q4_1: return {"q4_1", 32, 20};
    case QuantType::Q5_0: return {"q5_0", 32, 22};
    case QuantType::Q5_1: return {"q5_1", 32, 24};
    case QuantType::Q2_K: return {"q2_k", 256, 84};
    case QuantType::Q3_K: return {"q3_k", 256, 110};
    case QuantType::Q4_K: return {"q4_k", 256, 144};
    case QuantType::Q5_K: return {"q5_k", 256, 176};
    case QuantType::Q6_K: return {"q6_k", 256, 210};
    case QuantType::IQ4_NL: return {"iq4_nl", 32, 18};
    case QuantType::IQ4_XS: return {"iq4_xs", 256, 136};
    case QuantType::MXFP4: return {"mxfp4", 32, 17};
    case QuantType::None: break;
  }
  return {"none", 1, 0};
}

// Returns false when `name` is not a quantized type dynamoe runs.
inline bool parseQuantType(const std::string& name, QuantType* out) {
  for (int i = 1; i <= static_cast<int>(QuantType::MXFP4); ++i) {
    const auto t = static_cast<QuantType>(i);
    if (name == quantTraits(t).name) {
      *out = t;
      return true;
    }
  }
  return false;
}

// Bytes of one row of `cols` values (cols a multiple of the block size).
inline size_t quantRowBytes(QuantType t, int cols) {
  const QuantTraits traits = quantTraits(t);
  return static_cast<size_t>(cols / traits.blockElements) * traits.blockBytes;
}

// The decoders have internal linkage: each file that includes this header compiles its own copy with its own flags,
// so the SIMD kernel files get vectorized decoders and the linker never swaps in another file's baseline copy.
namespace {

namespace quant_detail {

inline float half(const uint8_t* p) { return f16ToF32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// The 16 values of IQ4_NL / IQ4_XS codes, and of MXFP4's E2M1 codes doubled (its scale is halved to match).
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// Scale and min j (of 8) of a Q4_K / Q5_K block: 6-bit values packed in 12 bytes.
inline void scaleMin(int j, const uint8_t* q, int* scale, int* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace quant_detail

// Dequantizes one block of type `t` at `b` into y[0 .. blockElements).
inline void dequantizeBlock(QuantType t, const uint8_t* b, float* y) {
  using namespace quant_detail;
  switch (t) {
    case QuantType::Q8_0: {
      const float d = half(b);
      for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
      return;
    }
    case QuantType::Q4_0: {
      const float d = half(b);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((b[2 + j] & 0xF) - 8) * d;
        y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
      }
      return;
    }
    case QuantType::Q4_1: {
      const float d = half(b), m = half(b + 2);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(b[4 + j] & 0xF) * d + m;
        y[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
      }
      return;
    }
    case QuantType::Q5_0:
    case QuantType::Q5_1: {
      const bool withMin = t == QuantType::Q5_1;
      const float d = half(b), m = withMin ? half(b + 2) : 0.0f;
      const uint8_t* qhBytes = b + (withMin ? 4 : 2);
      const uint32_t qh = qhBytes[0] | (qhBytes[1] << 8) | (qhBytes[2] << 16) | (static_cast<uint32_t>(qhBytes[3]) << 24);
      const uint8_t* qs = qhBytes + 4;
      const int offset = withMin ? 0 : 16;
      for (int j = 0; j < 16; ++j) {
        const int low = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
        const int high = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
        y[j] = static_cast<float>(low - offset) * d + m;
        y[j + 16] = static_cast<float>(high - offset) * d + m;
      }
      return;
    }
    case QuantType::Q2_K: {
      const uint8_t* scales = b;
      const uint8_t* q = b + 16;
      const float d = half(b + 80), dmin = half(b + 82);
      int is = 0;
      for (int n = 0; n < 256; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
          for (int half16 = 0; half16 < 2; ++half16) {
            const int sc = scales[is++];
            const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half16] >> shift) & 3) - ml;
          }
        }
      }
      return;
    }
    case QuantType::Q3_K: {
      const uint8_t* hmask = b;
      const uint8_t* q = b + 32;
      const uint8_t* packed = b + 96;
      const float d = half(b + 108);
      // 16 signed 6-bit scales: low 4 bits from bytes 0-7, high 2 bits from bytes 8-11.
      int8_t scales[16];
      for (int i = 0; i < 16; ++i) {
        const int low = i < 8 ? packed[i] & 0xF : packed[i - 8] >> 4;
        const int high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        scales[i] = static_cast<int8_t>((low | (high << 4)) - 32);
      }
      int is = 0;
      uint8_t m = 1;
      for (int n = 0; n < 256; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
          for (int half16 = 0; half16 < 2; ++half16) {
            const float dl = d * static_cast<float>(scales[is++]);
            for (int l = 16 * half16; l < 16 * half16 + 16; ++l) {
              const int value = ((q[l] >> shift) & 3) - ((hmask[l] & m) ? 0 : 4);
              *y++ = dl * static_cast<float>(value);
            }
          }
        }
      }
      return;
    }
    case QuantType::Q4_K:
    case QuantType::Q5_K: {
      const bool five = t == QuantType::Q5_K;
      const float d = half(b), dmin = half(b + 2);
      const uint8_t* packed = b + 4;
      const uint8_t* qh = b + 16;
      const uint8_t* q = b + (five ? 48 : 16);
      for (int j = 0; j < 4; ++j, q += 32) {
        int sc, mn;
        scaleMin(2 * j, packed, &sc, &mn);
        const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
        scaleMin(2 * j + 1, packed, &sc, &mn);
        const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
        for (int l = 0; l < 32; ++l) {
          const int high = five && (qh[l] >> (2 * j)) & 1 ? 16 : 0;
          *y++ = d1 * static_cast<float>((q[l] & 0xF) + high) - m1;
        }
        for (int l = 0; l < 32; ++l) {
          const int high = five && (qh[l] >> (2 * j + 1)) & 1 ? 16 : 0;
          *y++ = d2 * static_cast<float>((q[l] >> 4) + high) - m2;
        }
      }
      return;
    }
    case QuantType::Q6_K: {
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
      const float d = half(b + 208);
      for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; ++l) {
          const int is = l / 16;
          const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
          y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
          y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
          y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
      }
      return;
    }
    case QuantType::IQ4_NL: {
      const float d = half(b);
      for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(kIq4Values[b[2 + j] & 0xF]);
        y[j + 16] = d * static_cast<float>(kIq4Values[b[2 + j] >> 4]);
      }
      return;
    }
    case QuantType::IQ4_XS: {
      const float d = half(b);
      const int scalesHigh = b[2] | (b[3] << 8);
      const uint8_t* scalesLow = b + 4;
      const uint8_t* qs = b + 8;
      for (int ib = 0; ib < 8; ++ib, qs += 16, y += 32) {
        const int ls = ((scalesLow[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scalesHigh >> (2 * ib)) & 3) << 4);
        const float dl = d * static_cast<float>(ls - 32);
        for (int j = 0; j < 16; ++j) {
          y[j] = dl * static_cast<float>(kIq4Values[qs[j] & 0xF]);
          y[j + 16] = dl * static_cast<float>(kIq4Values[qs[j] >> 4]);
        }
      }
      return;
    }
    case QuantType::MXFP4: {
      // E8M0 scale 2^(e - 127), halved for the doubled value table: 2^(e - 128), exact in f32 (subnormal below).
      const float d = std::ldexp(1.0f, static_cast<int>(b[0]) - 128);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(kMxfp4Values[b[1 + j] & 0xF]) * d;
        y[j + 16] = static_cast<float>(kMxfp4Values[b[1 + j] >> 4]) * d;
      }
      return;
    }
    case QuantType::None: return;
  }
}

// Dequantizes `cols` values (a multiple of the block size) of one row.
inline void dequantizeRow(QuantType t, const uint8_t* row, int cols, float* y) {
  const QuantTraits traits = quantTraits(t);
  for (int c = 0; c < cols; c += traits.blockElements, row += traits.blockBytes) dequantizeBlock(t, row, y + c);
}

}  // namespace
}  // namespace dynamoe
