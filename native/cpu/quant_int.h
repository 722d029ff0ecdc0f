// Integer dot products of quantized weights with 8-bit activations (llama.cpp's way of multiplying Q8_0, Q4_0,
// MXFP4, Q4_K, Q5_K and Q6_K weights): each activation row is quantized on its own, from its own values only, to int8
// blocks with one scale per block, and a weight row's dot product with it is a sum over blocks of
// (weight scale x activation scale) x (an exact integer dot product of the codes).
//
// The activation blocks follow ggml's definitions:
//   - Q8_0-style (for Q8_0, Q4_0 and MXFP4 weights), 32 values a block: d = max|x| / 127, q = roundf(x / d) (ggml's
//     quantize_row_q8_0_ref: x times 1/d in f32, rounded half away from zero). The scale stays f32 (ggml stores it
//     as fp16, one more rounding that buys nothing here).
//   - Q8_K-style (for Q4_K, Q5_K and Q6_K weights), 256 values a block: the value m of largest magnitude (the first of
//     equals), iscale = -127 / m, q = min(127, nearest-even(iscale * x)), d = 1 / iscale, and the sums of each 16
//     codes (ggml's quantize_row_q8_K_ref).
// A quantized row is its K codes (Q8_0-style: q + 128 as bytes, so that VNNI's unsigned x signed byte products take
// them against the signed weights as they are; Q8_K: int8), then its K / blockElements scales (f32), then for Q8_K
// its K / 16 sums (int16), the whole padded to a 64-byte multiple.
//
// Whether quantized weights take this path is one process-wide choice (setQuantIntegerDots), per weight type: a
// type that takes it takes it for every row count, decode and prefill alike (batch invariance).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../core/quant.h"
#include "cpu_features.h"

namespace dynamoe::cpu {

enum class ActQuant { None, Q8_0, Q8_K };

// The activation blocks `weights` multiply with on the integer path; None for types that keep the f32 path.
inline ActQuant activationQuantFor(QuantType weights) {
  switch (weights) {
    case QuantType::Q8_0:
    case QuantType::Q4_0:
    case QuantType::MXFP4: return ActQuant::Q8_0;
    case QuantType::Q4_K:
    case QuantType::Q5_K:
    case QuantType::Q6_K: return ActQuant::Q8_K;
    default: return ActQuant::None;
  }
}

inline int actBlockElements(ActQuant a) { return a == ActQuant::Q8_K ? 256 : 32; }
// Byte offsets in a quantized row of k values: the scales, and (Q8_K) the 16-value sums.
inline size_t actScalesOffset(int k) { return static_cast<size_t>(k); }
inline size_t actSumsOffset(ActQuant a, int k) {
  return static_cast<size_t>(k) + sizeof(float) * static_cast<size_t>(k / actBlockElements(a));
}
inline size_t actRowBytes(ActQuant a, int k) {
  size_t bytes = actSumsOffset(a, k) + (a == ActQuant::Q8_K ? sizeof(int16_t) * static_cast<size_t>(k / 16) : 0);
  return (bytes + 63) / 64 * 64;
}

// Quantizes the k values of `x` (k a multiple of the block) into `out` (actRowBytes(a, k) bytes). Plain scalar code
// compiled once, so every kernel family sees the same codes. A block with a value that is not finite gets a NaN
// scale (and zero codes): the row's products come out NaN, as the f32 path's would be non-finite.
inline void quantizeActivationRow(ActQuant a, const float* x, int k, uint8_t* out) {
  int8_t* qs = reinterpret_cast<int8_t*>(out);
  float* scales = reinterpret_cast<float*>(out + actScalesOffset(k));
  const int n = actBlockElements(a);
  for (int b = 0; b < k / n; ++b) {
    const float* xb = x + static_cast<size_t>(b) * n;
    int8_t* qb = qs + static_cast<size_t>(b) * n;
    float amax = 0.0f, max = 0.0f;
    bool finite = true;
    for (int j = 0; j < n; ++j) {
      const float ax = std::fabs(xb[j]);
      if (!(ax <= std::numeric_limits<float>::max())) finite = false;
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    float d;
    if (!finite) {
      d = std::numeric_limits<float>::quiet_NaN();
      std::memset(qb, a == ActQuant::Q8_0 ? 0x80 : 0, n);
    } else if (a == ActQuant::Q8_0) {
      d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      for (int j = 0; j < n; ++j) {
        // roundf: |v| <= 127 truncates exactly to an int; the fraction v - t is exact too.
        const float v = xb[j] * id;
        int t = static_cast<int>(v);
        const float fraction = v - static_cast<float>(t);
        t += fraction >= 0.5f ? 1 : fraction <= -0.5f ? -1 : 0;
        qb[j] = static_cast<int8_t>(static_cast<uint8_t>(t + 128));
      }
    } else if (amax == 0.0f) {
      d = 0.0f;
      std::memset(qb, 0, n);
    } else {
      const float iscale = -127.0f / max;
      for (int j = 0; j < n; ++j) {
        // ggml's nearest_int: adding 1.5 * 2^23 rounds to an integer, ties to even, which the low bits then hold.
        const float shifted = iscale * xb[j] + 12582912.0f;
        int32_t bits;
        std::memcpy(&bits, &shifted, sizeof bits);
        const int q = (bits & 0x007fffff) - 0x00400000;
        qb[j] = static_cast<int8_t>(q > 127 ? 127 : q);
      }
      d = 1.0f / iscale;
    }
    std::memcpy(scales + b, &d, sizeof d);
  }
  if (a == ActQuant::Q8_K) {
    int16_t* sums = reinterpret_cast<int16_t*>(out + actSumsOffset(a, k));
    for (int g = 0; g < k / 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += qs[16 * g + j];
      sums[g] = static_cast<int16_t>(s);
    }
  }
}

// Dot products of `columns` quantized weight rows (k values each) with up to kQuantIntRows quantized activation rows
// of the type's ActQuant: out[c * kQuantIntRows + r] = sum over blocks of (weight scales x row scale) x integer sums,
// each row's terms added in one order whatever rowCount is.
constexpr int kQuantIntRows = 8;
struct QuantIntJob {
  QuantType type;
  const uint8_t* weights;      // weight row 0; row c at weights + c * weightStride
  size_t weightStride;
  int columns;
  int k;
  const uint8_t* const* rows;  // rowCount quantized rows (quantizeActivationRow)
  int rowCount;                // 1..kQuantIntRows
  float* out;                  // columns x kQuantIntRows sums
};
using QuantIntDotFn = void (*)(const QuantIntJob& job);

// The integer kernels of a kernel family: the scalar ones, AVX2 (maddubs), AVX512-VNNI (512-bit vpdpbusd).
QuantIntDotFn quantIntDotFor(Isa isa);
void quantIntDotScalar(const QuantIntJob& job);
// quantizeActivationRow, or a vectorized copy that gives the same bytes (the same f32 operations lane by lane).
using QuantizeRowFn = void (*)(ActQuant a, const float* x, int k, uint8_t* out);
QuantizeRowFn quantizeRowFor(Isa isa);
#if defined(DYNAMOE_X86_KERNELS)
void quantIntDotAvx2(const QuantIntJob& job);
void quantIntDotAvx512Vnni(const QuantIntJob& job);
void quantIntDotAvxVnni(const QuantIntJob& job);
void quantizeActivationRowAvx512(ActQuant a, const float* x, int k, uint8_t* out);
#endif

// The process-wide choice: true (the default) multiplies the types above with integer dot products on 8-bit
// activations; false keeps every quantized type on the exact f32 path (each block decoded to f32, f32 activations).
// The environment variable DYNAMOE_QUANT_ACTIVATIONS=f32 makes false the starting value.
bool quantIntegerDots();
void setQuantIntegerDots(bool on);

}  // namespace dynamoe::cpu
