// Dequantization of one group of 16 consecutive values of a GGUF block (ggml's block formats), for every type:
// the unit both backends decode. The CPU's dequantizeBlock (quant.h) is this, group after group, so the tests that
// hold it to the format definitions hold the CUDA kernels' decoder too. Every block size is a multiple of 16, and
// inside a k-quant block a group of 16 never straddles a (sub-)scale.
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"
#include "quant_type.h"

namespace dynamoe {

constexpr int kQuantGroupElements = 16;

// Internal linkage, like quant.h's decoders: each file compiles its own copy with its own flags.
namespace {

namespace quant_groups {

DYNAMOE_HOST_DEVICE inline float floatFromBits(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
#endif
}

// a * b + c in two roundings on both backends: device code would otherwise fuse it into one FMA (nvcc contracts by
// default), and the CPU's scalar code, built without FMA, never does; so both decode every value to the same bits.
DYNAMOE_HOST_DEVICE inline float mulAdd(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(__fmul_rn(a, b), c);
#else
  return a * b + c;
#endif
}
DYNAMOE_HOST_DEVICE inline float mulSub(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(__fmul_rn(a, b), c);
#else
  return a * b - c;
#endif
}

// IEEE half at p (little endian) as f32, exactly.
DYNAMOE_HOST_DEVICE inline float halfAt(const uint8_t* p) {
  const uint32_t h = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8);
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return floatFromBits(sign | 0x7f800000u | (mantissa << 13));  // inf / nan
  if (exponent != 0) return floatFromBits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Subnormal half (or zero): mantissa * 2^-24, exact in f32.
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

// Code c (0..15) of IQ4_NL / IQ4_XS, and of MXFP4's E2M1 doubled (its scale is halved to match): the tables packed
// into 64-bit words, so device code reads them from registers rather than from a host array.
DYNAMOE_HOST_DEVICE inline int packedCode(uint64_t low, uint64_t high, int c) {
  const uint64_t word = c < 8 ? low : high;
  return static_cast<int8_t>(static_cast<uint8_t>(word >> (8 * (c & 7))));
}
// {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
DYNAMOE_HOST_DEVICE inline int iq4Value(int c) {
  return packedCode(0xF6EADDCFBFAD9881ull, 0x7159453526190D01ull, c);
}
// {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}
DYNAMOE_HOST_DEVICE inline int mxfp4Value(int c) {
  return packedCode(0x0C08060403020100ull, 0xF4F8FAFCFDFEFF00ull, c);
}

// MXFP4's E8M0 scale 2^(e - 127), halved for the doubled value table: 2^(e - 128), exact (subnormal for e < 2).
DYNAMOE_HOST_DEVICE inline float e8m0Halved(uint8_t e) {
  return e >= 2 ? floatFromBits(static_cast<uint32_t>(e - 1) << 23) : floatFromBits(0x00400000u >> (1 - e));
}

// Scale and min j (of 8) of a Q4_K / Q5_K block: 6-bit values packed in 12 bytes.
DYNAMOE_HOST_DEVICE inline void scaleMin(int j, const uint8_t* q, int* scale, int* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace quant_groups

// y[0 .. 16) = values 16 * group .. 16 * group + 15 of the block of type `t` at `b` (group < blockElements / 16).
// The arithmetic is ggml's dequantization, operation for operation.
DYNAMOE_HOST_DEVICE inline void dequantizeGroup16(QuantType t, const uint8_t* b, int group, float* y) {
  using namespace quant_groups;
  switch (t) {
    case QuantType::Q8_0: {
      const float d = halfAt(b);
      const uint8_t* q = b + 2 + 16 * group;
      for (int j = 0; j < 16; ++j) y[j] = static_cast<float>(static_cast<int8_t>(q[j])) * d;
      return;
    }
    case QuantType::Q4_0: {
      const float d = halfAt(b);
      const int shift = 4 * group;  // group 0: the low nibbles, group 1: the high ones
      for (int j = 0; j < 16; ++j) y[j] = static_cast<float>(((b[2 + j] >> shift) & 0xF) - 8) * d;
      return;
    }
    case QuantType::Q4_1: {
      const float d = halfAt(b), m = halfAt(b + 2);
      const int shift = 4 * group;
      for (int j = 0; j < 16; ++j) y[j] = mulAdd(static_cast<float>((b[4 + j] >> shift) & 0xF), d, m);
      return;
    }
    case QuantType::Q5_0:
    case QuantType::Q5_1: {
      const bool withMin = t == QuantType::Q5_1;
      const float d = halfAt(b), m = withMin ? halfAt(b + 2) : 0.0f;
      const uint8_t* qhBytes = b + (withMin ? 4 : 2);
      const uint32_t qh = qhBytes[0] | (qhBytes[1] << 8) | (qhBytes[2] << 16) |
                          (static_cast<uint32_t>(qhBytes[3]) << 24);
      const uint8_t* qs = qhBytes + 4;
      const int offset = withMin ? 0 : 16;
      const int shift = 4 * group;
      for (int j = 0; j < 16; ++j) {
        const int code = ((qs[j] >> shift) & 0xF) | (((qh >> (j + 16 * group)) & 1) << 4);
        y[j] = mulAdd(static_cast<float>(code - offset), d, m);
      }
      return;
    }
    case QuantType::Q2_K: {
      // Groups run over 128-value halves (32 code bytes each), then 2-bit planes, then the 16-byte halves.
      const int plane = (group % 8) / 2;
      const uint8_t* q = b + 16 + 32 * (group / 8) + 16 * (group % 2);
      const float d = halfAt(b + 80), dmin = halfAt(b + 82);
      const int sc = b[group];
      const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; ++l) y[l] = mulSub(dl, static_cast<float>((q[l] >> (2 * plane)) & 3), ml);
      return;
    }
    case QuantType::Q3_K: {
      const int plane = (group % 8) / 2;
      const int firstByte = 16 * (group % 2);
      const uint8_t* hmask = b + firstByte;
      const uint8_t* q = b + 32 + 32 * (group / 8) + firstByte;
      const uint8_t* packed = b + 96;
      const float d = halfAt(b + 108);
      // Signed 6-bit scale: low 4 bits from bytes 0-7, high 2 bits from bytes 8-11.
      const int low = group < 8 ? packed[group] & 0xF : packed[group - 8] >> 4;
      const int high = (packed[8 + group % 4] >> (2 * (group / 4))) & 3;
      const float dl = d * static_cast<float>(static_cast<int8_t>((low | (high << 4)) - 32));
      const uint8_t m = static_cast<uint8_t>(1u << (4 * (group / 8) + plane));
      for (int l = 0; l < 16; ++l) {
        const int value = ((q[l] >> (2 * plane)) & 3) - ((hmask[l] & m) ? 0 : 4);
        y[l] = dl * static_cast<float>(value);
      }
      return;
    }
    case QuantType::Q4_K:
    case QuantType::Q5_K: {
      // Sub-block s = group / 2 (32 values, its own scale and min): pair j = s / 2 shares 32 code bytes, the even
      // sub-block in their low nibbles, the odd one in their high nibbles (Q5_K: bit s of qh is the fifth bit).
      const bool five = t == QuantType::Q5_K;
      const int sub = group / 2;
      const int firstByte = 16 * (group % 2);
      const float d = halfAt(b), dmin = halfAt(b + 2);
      const uint8_t* qh = b + 16 + firstByte;
      const uint8_t* q = b + (five ? 48 : 16) + 32 * (sub / 2) + firstByte;
      int sc, mn;
      scaleMin(sub, b + 4, &sc, &mn);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
      const int shift = 4 * (sub % 2);
      for (int l = 0; l < 16; ++l) {
        const int high = five && (qh[l] >> sub) & 1 ? 16 : 0;
        y[l] = mulSub(dl, static_cast<float>(((q[l] >> shift) & 0xF) + high), ml);
      }
      return;
    }
    case QuantType::Q6_K: {
      // Per 128-value half: quarter p = (group % 8) / 2 takes ql bytes 0-31 (p even) or 32-63 (p odd), their low
      // (p < 2) or high nibbles, and bits 2p, 2p + 1 of qh; its scale is sc[group].
      const int half128 = group / 8;
      const int quarter = (group % 8) / 2;
      const int firstByte = 16 * (group % 2);
      const uint8_t* ql = b + 64 * half128 + 32 * (quarter % 2) + firstByte;
      const uint8_t* qh = b + 128 + 32 * half128 + firstByte;
      const int8_t sc = static_cast<int8_t>(b[192 + group]);
      const float d = halfAt(b + 208);
      const int lowShift = 4 * (quarter / 2);
      for (int l = 0; l < 16; ++l) {
        const int q = (((ql[l] >> lowShift) & 0xF) | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc) * static_cast<float>(q);
      }
      return;
    }
    case QuantType::IQ4_NL: {
      const float d = halfAt(b);
      const int shift = 4 * group;
      for (int j = 0; j < 16; ++j) y[j] = d * static_cast<float>(iq4Value((b[2 + j] >> shift) & 0xF));
      return;
    }
    case QuantType::IQ4_XS: {
      const int sub = group / 2;  // 32 values with a 6-bit scale: low 4 bits in bytes 4-7, high 2 in bytes 2-3
      const float d = halfAt(b);
      const int scalesHigh = b[2] | (b[3] << 8);
      const int ls = ((b[4 + sub / 2] >> (4 * (sub % 2))) & 0xF) | (((scalesHigh >> (2 * sub)) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      const uint8_t* qs = b + 8 + 16 * sub;
      const int shift = 4 * (group % 2);
      for (int j = 0; j < 16; ++j) y[j] = dl * static_cast<float>(iq4Value((qs[j] >> shift) & 0xF));
      return;
    }
    case QuantType::MXFP4: {
      const float d = e8m0Halved(b[0]);
      const int shift = 4 * group;
      for (int j = 0; j < 16; ++j) y[j] = static_cast<float>(mxfp4Value((b[1 + j] >> shift) & 0xF)) * d;
      return;
    }
    case QuantType::None: return;
  }
}

}  // namespace
}  // namespace dynamoe
