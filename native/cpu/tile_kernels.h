// The register-blocked inner kernels of the expert GEMMs, one family per instruction set (chosen at run time).
//
// Weights are packed in panels of kPanelWidth columns, K-major: panel[k][0..31] (bf16: in k pairs, see below).
// A tile multiplies up to `maxRows` activation rows (f32, gathered through row pointers; grouped_gemm.cpp copies
// them only where their spacing would thrash L1, or rounds them to bf16 for dot-product tiles) by one panel
// over a K range (the job's pointers already point at the range's first k). Partial sums of earlier K ranges live
// in `partial`; the last range applies the epilogue:
//   - SwiGlu: the panel holds 16 gate columns then 16 up columns; writes silu(gate) * up, 16 floats per row;
//   - Scaled: writes rowScale[r] * (row . panel), 32 floats per row.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/dtype.h"
#include "../core/moe_stages.h"
#include "../core/quant.h"
#include "cpu_features.h"

namespace dynamoe::cpu {

constexpr int kPanelWidth = 32;
constexpr int kSwiGluColumns = kPanelWidth / 2;  // intermediate columns produced per gate/up panel

// bf16 panels store k in pairs, [k/2][32][2], K padded to even with zeros: one 32-bit lane holds a column's values
// at k and k+1. That is the operand layout of the bf16 dot-product instruction (vdpbf16ps), and the widening
// kernels split such a lane into its two k rows with one shift and one mask, keeping column order.
constexpr bool storesKPairs(DType dtype) { return dtype == DType::BF16; }
// K rows a panel stores: K, padded to even for bf16.
constexpr int storedK(DType dtype, int k) { return storesKPairs(dtype) ? (k + 1) / 2 * 2 : k; }
// Index of element (kk, column) in a panel, counted from a panel row that is even for bf16.
inline size_t panelElementIndex(DType dtype, size_t kk, int column) {
  const size_t c = static_cast<size_t>(column);
  return storesKPairs(dtype) ? (kk & ~size_t{1}) * kPanelWidth + 2 * c + (kk & 1) : kk * kPanelWidth + c;
}

// The core's epilogue kinds: SwiGlu reads weights from packGateUp, Scaled from packColumns.
// Output columns one panel writes with this epilogue.
inline int epilogueColumns(Epilogue epilogue) { return epilogue == Epilogue::SwiGlu ? kSwiGluColumns : kPanelWidth; }

struct TileJob {
  // rowCount activation rows, each at the range's first k: f32, or for families with a roundRowBf16 and bf16
  // weights, the rows rounded to bf16 (in pairs, padded with a zero to whole pairs)
  const void* const* rows;
  int rowCount;              // 1..maxRows
  const void* panel;         // [k][32] panel rows, starting at the range's first k (even for bf16)
  int k;                     // length of the K range
  float* partial;            // rowCount x 32 running sums: read unless `first`, written unless `last`
  bool first;
  bool last;
  Epilogue epilogue;
  const float* rowScale;     // Scaled: one factor per row
  float* const* out;         // rowCount output pointers (epilogueColumns floats each)
  // Memory to bring into cache while the tile computes: `prefetchLines` 64-byte lines (at most k) from `prefetch`,
  // one per k from the range's first: part of the panel's next K slice, which would otherwise be read only after
  // every row tile of this slice has finished.
  const char* prefetch;
  int prefetchLines;
};

using TileFn = void (*)(const TileJob& job);

// Causal attention of one query row for `queries` consecutive heads that share one key/value head (grouped-query
// attention), so each key and value loaded serves all of them.
struct AttendJob {
  const float* query;  // queries x headDim floats: head g's query at query + g * headDim
  float* out;          // queries x headDim floats, laid out as query
  int queries;
  // Keys and values in blocks of blockTokens positions (a multiple of 16): position p's key at
  // keyBlocks[p / blockTokens] + headOffset + (p % blockTokens) * kvStride, its value likewise.
  const float* const* keyBlocks;
  const float* const* valueBlocks;
  int blockTokens;
  size_t headOffset;
  size_t kvStride;
  int visible;  // positions first .. visible - 1
  int headDim;
  float scale;
  float* scores;  // scratch: queries x attendScratchFloats(visible) floats, head g's at g * attendScratchFloats
  int first = 0;  // the first visible position (a sliding window's start)
  // Attention sinks: head g's logit sinks[g] joins its softmax denominator (and no value); null for none.
  const float* sinks = nullptr;
};
using AttendFn = void (*)(const AttendJob& job);
// The first key (value) of block b of a job's head: blockTokens positions kvStride apart follow it.
inline const float* attendKeys(const AttendJob& job, int b) { return job.keyBlocks[b] + job.headOffset; }
inline const float* attendValues(const AttendJob& job, int b) { return job.valueBlocks[b] + job.headOffset; }
// Scratch floats an AttendJob needs per query head: the visible scores, padded to a whole register of the widest
// family.
inline size_t attendScratchFloats(int visible) { return (static_cast<size_t>(visible) + 15) / 16 * 16; }
// The portable version, also used by the SIMD families for head widths that are not a multiple of their lanes.
void attendScalar(const AttendJob& job);
// Widens `k` rows of a 16-bit panel to f32 ([k][32] floats), so many row tiles can share one conversion.
using WidenFn = void (*)(const void* panel, int k, float* out);
// Rounds k floats to bf16 (round to nearest even), then a zero if k is odd: the rows a bf16 dot-product tile reads.
using RoundRowFn = void (*)(const float* row, int k, uint16_t* out);

// Dot products of one quantized weight row (K values of GGUF blocks) with up to kQuantRows activation rows:
// out[r] = rows[r] . dequantize(weights). Each product is added in one order whatever rowCount is (batch invariance).
constexpr int kQuantRows = 8;
struct QuantJob {
  QuantType type;
  const uint8_t* weights;
  int k;
  const float* const* rows;  // rowCount rows of k floats
  int rowCount;              // 1..kQuantRows
  float* out;                // rowCount sums
};
using QuantDotFn = void (*)(const QuantJob& job);
// out[i] = silu(gate[i]) x up[i] for i < n (n a multiple of 16): the SwiGLU epilogue of the quantized kernels.
using SwiGluFn = void (*)(const float* gate, const float* up, int n, float* out);

struct TileKernels {
  Isa isa;
  int maxRows;
  // Most rows of a streaming tile: one that reads a 16-bit panel itself and takes a few-row item's whole K range.
  // Items of more rows go K slice by K slice, 16-bit slices widened once for all their tiles.
  int maxStreamingRows;
  TileFn tile[3];    // indexed by weight DType
  WidenFn widen[3];  // indexed by weight DType; null where the tiles read the stored panel directly (f32 always)
  AttendFn attend;   // attention rows of the model graphs, with the same instruction set
  // Non-null for families whose bf16 tiles are dot products on bf16 activations: they round each row first.
  RoundRowFn roundRowBf16;
  QuantDotFn quantDot;  // quantized weights, with the same instruction set
  SwiGluFn swiGlu;      // the quantized kernels' SwiGLU, with the same instruction set and exp as the f32 tiles
};

inline int dtypeIndex(DType t) { return static_cast<int>(t); }

const TileKernels& scalarTileKernels();
#if defined(DYNAMOE_X86_KERNELS)
const TileKernels& avx2TileKernels();
const TileKernels& avx512TileKernels();
const TileKernels& avx512Bf16TileKernels();
#endif

// The kernels in use (the best the CPU supports unless setActiveIsa() chose another).
const TileKernels& activeTileKernels();
// Throws ERR_DYNAMOE_TYPE when the CPU cannot run `isa`.
void setActiveIsa(Isa isa);

}  // namespace dynamoe::cpu
