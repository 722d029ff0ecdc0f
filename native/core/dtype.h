// Element types of host tensors and the scalar conversions between them (round-to-nearest-even).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace dynamoe {

enum class DType { F32, F16, BF16 };

inline size_t dtypeBytes(DType t) { return t == DType::F32 ? 4 : 2; }

inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
  }
  return "?";
}

// Returns false when `name` is not a dtype we know.
inline bool parseDType(const std::string& name, DType* out) {
  if (name == "f32") *out = DType::F32;
  else if (name == "f16") *out = DType::F16;
  else if (name == "bf16") *out = DType::BF16;
  else return false;
  return true;
}

inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16ToF32(uint16_t h) { return bitsFloat(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32ToBf16(float f) {
  uint32_t u = floatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // keep NaN a NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bitsFloat(sign | 0x7f800000u | (mantissa << 13));  // inf / nan
  if (exponent != 0) return bitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return bitsFloat(sign);
  // Subnormal half: value = mantissa * 2^-24, exact in f32.
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

inline uint16_t f32ToF16(float f) {
  const uint32_t u = floatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t absBits = u & 0x7fffffffu;
  if (absBits >= 0x7f800000u) return sign | (absBits > 0x7f800000u ? 0x7e00u : 0x7c00u);
  if (absBits >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to inf
  if (absBits < 0x38800000u) {
    // Result is subnormal (or zero): round |f| / 2^-24 to the nearest integer, ties to even.
    const float scaled = bitsFloat(absBits) * 16777216.0f;  // exact: multiplies by 2^24
    uint32_t whole = static_cast<uint32_t>(scaled);
    const float frac = scaled - static_cast<float>(whole);
    if (frac > 0.5f || (frac == 0.5f && (whole & 1u))) whole++;
    return sign | static_cast<uint16_t>(whole);
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even.
  uint32_t bits = absBits - (112u << 23);
  bits += 0xfffu + ((bits >> 13) & 1u);
  return sign | static_cast<uint16_t>(bits >> 13);
}

// Widens one stored element of type `t` to f32.
inline float loadAsF32(const void* data, size_t index, DType t) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(data)[index];
    case DType::F16: return f16ToF32(static_cast<const uint16_t*>(data)[index]);
    case DType::BF16: return bf16ToF32(static_cast<const uint16_t*>(data)[index]);
  }
  return 0.0f;
}

}  // namespace dynamoe
