// Quantizers: f32 rows to GGUF blocks of q8_0, q4_0, q4_k and q6_k, in the block layouts quant.h decodes (those
// llama.cpp reads). Round to nearest; scales from each (sub-)block's range, stored as f16 (and 6- or 8-bit
// sub-block scales for the k-quants), with the codes clamped to the type's range.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "dtype.h"
#include "quant.h"

namespace dynamoe {
namespace {

namespace quant_encode_detail {

inline void putHalf(uint8_t* p, float v) {
  const uint16_t h = f32ToF16(v);
  p[0] = static_cast<uint8_t>(h & 0xFF);
  p[1] = static_cast<uint8_t>(h >> 8);
}

inline int nearest(float v) { return static_cast<int>(std::lround(v)); }

// The value of largest magnitude, with its sign.
inline float signedMax(const float* x, int n) {
  float best = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(best)) best = x[i];
  }
  return best;
}

inline void encodeQ8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  putHalf(b, d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(nearest(x[j] * id), -127, 127)));
}

inline void encodeQ4_0(const float* x, uint8_t* b) {
  // The largest magnitude maps to code 0 (-8 * d), so the other extreme still fits +7.
  const float d = signedMax(x, 32) / -8.0f;
  putHalf(b, d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 16; ++j) {
    const int low = std::clamp(nearest(x[j] * id) + 8, 0, 15);
    const int high = std::clamp(nearest(x[j + 16] * id) + 8, 0, 15);
    b[2 + j] = static_cast<uint8_t>(low | (high << 4));
  }
}

// Q4_K: 8 sub-blocks of 32 with a 6-bit scale and min each, relative to the block's f16 d and dmin.
inline void encodeQ4_K(const float* x, uint8_t* b) {
  float scales[8], mins[8];
  for (int s = 0; s < 8; ++s) {
    float lo = 0.0f, hi = 0.0f;  // the range always holds 0, so mins are never negative
    for (int j = 0; j < 32; ++j) {
      lo = std::min(lo, x[32 * s + j]);
      hi = std::max(hi, x[32 * s + j]);
    }
    scales[s] = (hi - lo) / 15.0f;
    mins[s] = -lo;
  }
  const float maxScale = *std::max_element(scales, scales + 8), maxMin = *std::max_element(mins, mins + 8);
  const float d = maxScale / 63.0f, dmin = maxMin / 63.0f;
  putHalf(b, d);
  putHalf(b + 2, dmin);
  const float dStored = f16ToF32(f32ToF16(d)), dminStored = f16ToF32(f32ToF16(dmin));
  int ls[8], lm[8];
  for (int s = 0; s < 8; ++s) {
    ls[s] = dStored > 0.0f ? std::clamp(nearest(scales[s] / dStored), 0, 63) : 0;
    lm[s] = dminStored > 0.0f ? std::clamp(nearest(mins[s] / dminStored), 0, 63) : 0;
  }
  uint8_t* packed = b + 4;
  for (int s = 0; s < 4; ++s) {
    packed[s] = static_cast<uint8_t>(ls[s] | ((ls[s + 4] >> 4) << 6));
    packed[s + 4] = static_cast<uint8_t>(lm[s] | ((lm[s + 4] >> 4) << 6));
    packed[s + 8] = static_cast<uint8_t>((ls[s + 4] & 0xF) | ((lm[s + 4] & 0xF) << 4));
  }
  uint8_t* q = b + 16;
  for (int j = 0; j < 4; ++j) {
    int codes[2][32];
    for (int part = 0; part < 2; ++part) {
      const int s = 2 * j + part;
      const float scale = dStored * static_cast<float>(ls[s]), min = dminStored * static_cast<float>(lm[s]);
      for (int l = 0; l < 32; ++l) {
        codes[part][l] = scale > 0.0f ? std::clamp(nearest((x[32 * s + l] + min) / scale), 0, 15) : 0;
      }
    }
    for (int l = 0; l < 32; ++l) q[32 * j + l] = static_cast<uint8_t>(codes[0][l] | (codes[1][l] << 4));
  }
}

// Q6_K: 16 groups of 16 with an int8 scale each, relative to the block's f16 d; 6-bit codes centred on 32.
inline void encodeQ6_K(const float* x, uint8_t* b) {
  float groupScales[16];
  for (int g = 0; g < 16; ++g) groupScales[g] = signedMax(x + 16 * g, 16) / -32.0f;
  const float maxScale = signedMax(groupScales, 16);
  const float d = maxScale / -128.0f;
  putHalf(b + 208, d);
  const float dStored = f16ToF32(f32ToF16(d));
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  int codes[256];
  for (int g = 0; g < 16; ++g) {
    sc[g] = static_cast<int8_t>(dStored != 0.0f ? std::clamp(nearest(groupScales[g] / dStored), -128, 127) : 0);
    const float scale = dStored * sc[g];
    for (int i = 0; i < 16; ++i) {
      codes[16 * g + i] = scale != 0.0f ? std::clamp(nearest(x[16 * g + i] / scale) + 32, 0, 63) : 32;
    }
  }
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  std::memset(qh, 0, 64);
  for (int n = 0; n < 2; ++n) {
    for (int l = 0; l < 32; ++l) {
      const int* c = codes + 128 * n;
      ql[64 * n + l] = static_cast<uint8_t>((c[l] & 0xF) | ((c[l + 64] & 0xF) << 4));
      ql[64 * n + l + 32] = static_cast<uint8_t>((c[l + 32] & 0xF) | ((c[l + 96] & 0xF) << 4));
      qh[32 * n + l] = static_cast<uint8_t>((c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4) |
                                            ((c[l + 96] >> 4) << 6));
    }
  }
}

}  // namespace quant_encode_detail

// Whether dynamoe can write `t`.
inline bool canQuantize(QuantType t) {
  return t == QuantType::Q8_0 || t == QuantType::Q4_0 || t == QuantType::Q4_K || t == QuantType::Q6_K;
}

// Quantizes one row of `cols` values (a multiple of the block size) into row bytes.
inline void quantizeRow(QuantType t, const float* x, int cols, uint8_t* row) {
  using namespace quant_encode_detail;
  const QuantTraits traits = quantTraits(t);
  for (int c = 0; c < cols; c += traits.blockElements, row += traits.blockBytes) {
    switch (t) {
      case QuantType::Q8_0: encodeQ8_0(x + c, row); break;
      case QuantType::Q4_0: encodeQ4_0(x + c, row); break;
      case QuantType::Q4_K: encodeQ4_K(x + c, row); break;
      case QuantType::Q6_K: encodeQ6_K(x + c, row); break;
      default: return;
    }
  }
}

}  // namespace
}  // namespace dynamoe
