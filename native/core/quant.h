// Scalar dequantization of GGUF quantized blocks, block by block and row by row, and the decoding helpers the CPU's
// SIMD decoders share. The types are in quant_type.h, the per-group arithmetic in quant_groups.h.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "dtype.h"
#include "quant_groups.h"
#include "quant_type.h"

namespace dynamoe {

// The decoders have internal linkage: each file that includes this header compiles its own copy with its own flags,
// so the SIMD kernel files get vectorized decoders and the linker never swaps in another file's baseline copy.
namespace {

namespace quant_detail {

using quant_groups::halfAt;
inline float half(const uint8_t* p) { return halfAt(p); }

// The 16 values of IQ4_NL / IQ4_XS codes, and of MXFP4's E2M1 codes doubled (its scale is halved to match).
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// Scale and min j (of 8) of a Q4_K / Q5_K block: 6-bit values packed in 12 bytes.
using quant_groups::scaleMin;

}  // namespace quant_detail

// Dequantizes one block of type `t` at `b` into y[0 .. blockElements): its groups of 16 in order.
inline void dequantizeBlock(QuantType t, const uint8_t* b, float* y) {
  const int groups = quantTraits(t).blockElements / kQuantGroupElements;
  for (int g = 0; g < groups; ++g) dequantizeGroup16(t, b, g, y + g * kQuantGroupElements);
}

// Dequantizes `cols` values (a multiple of the block size) of one row.
inline void dequantizeRow(QuantType t, const uint8_t* row, int cols, float* y) {
  const QuantTraits traits = quantTraits(t);
  for (int c = 0; c < cols; c += traits.blockElements, row += traits.blockBytes) dequantizeBlock(t, row, y + c);
}

}  // namespace
}  // namespace dynamoe
