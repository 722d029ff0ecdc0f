// Launchers of the MoE block's CUDA kernels, one stage per file (route, plan, grouped GEMMs, finalize). Every
// launcher only enqueues work on `stream`: sizes that depend on the routing (rows per expert, tile counts) are read
// by the kernels from device memory, so a whole forward runs without host synchronisation and can be captured in
// a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../native/core/dtype.h"
#include "../native/core/moe_config.h"
#include "../native/core/moe_stages.h"
#include "../native/core/quant_type.h"
#include "../native/core/router_rule.h"
#include "../native/core/routing_policy.h"

namespace dynamoe::cuda {

// Hidden and intermediate sizes are zero-padded to this on the device, so no GEMM has a K or N tail.
constexpr int kDimensionAlignment = 128;
inline int paddedDimension(int size) {
  return (size + kDimensionAlignment - 1) / kDimensionAlignment * kDimensionAlignment;
}

// Tokens per plan chunk: the route kernel counts each chunk's tokens per expert, the plan ranks rows chunk by chunk.
constexpr int kTokensPerChunk = 64;
inline int chunkCount(int tokens) { return (tokens + kTokensPerChunk - 1) / kTokensPerChunk; }
// Largest expert count the fused routing kernel keeps in shared memory (a warp's probabilities).
constexpr int kMaxDeviceExperts = 4096;

// ---- route (route_kernel.cu) --------------------------------------------------------------------------------
struct RouteLaunch {
  const float* scores = nullptr;  // [tokens][scoreStride] logits or probabilities
  int scoreStride = 0;
  int tokens = 0;
  int experts = 0;
  bool logits = true;  // false: scores are probabilities, used as they are
  RoutingPolicy policy;
  int kMax = 0;
  int32_t* ids = nullptr;          // [tokens][kMax], -1 in unused slots (the API's sentinel, kept on the device)
  float* weights = nullptr;        // [tokens][kMax], 0 in unused slots
  int32_t* counts = nullptr;       // [tokens]
  // Both zeroed by the caller, then added to with integer atomics (exact, so the same every run):
  int32_t* expertLoad = nullptr;   // [experts] tokens routed to each expert
  int32_t* chunkCounts = nullptr;  // [chunkCount(tokens)][experts] tokens of each chunk routed to each expert
  int32_t* firstInvalidToken = nullptr;  // [1], INT_MAX on entry: lowest token whose logits are not all finite
  // A family's rule (its selectionBias in device memory) other than the plain softmax: the core's router_select.h,
  // one thread a token, with `ruleScratch` [tokens][4][experts] 4-byte values.
  RouterRule rule;
  void* ruleScratch = nullptr;
  // A step of many sequences: token t is routed by segmentPolicies[tokenSegments[t]] (both device arrays) instead of
  // `policy`; kMax covers every segment's policy. Null: every token by `policy`.
  const RoutingPolicy* segmentPolicies = nullptr;
  const int32_t* tokenSegments = nullptr;
};
void launchRoute(const RouteLaunch& launch, cudaStream_t stream);

// ---- plan (expert_plan_kernels.cu) --------------------------------------------------------------------------
// Counting sort of the used slots by expert, in token order within an expert (deterministic), plus the tile table
// of the grouped GEMMs: tile i covers plan rows [tileRowStart[i], min(+tileRows, end of tileExpert[i]'s rows)).
struct PlanLaunch {
  int tokens = 0;
  int experts = 0;
  int kMax = 0;
  int tileRows = 0;  // rows per GEMM tile (BM)
  // Row stride of chunkCounts / chunkBase: the route's expert count, which counts zero-computation experts too
  // (ids >= experts, which get no plan row). 0: experts.
  int countStride = 0;
  const int32_t* ids = nullptr;
  const float* weights = nullptr;
  const int32_t* counts = nullptr;
  const int32_t* expertLoad = nullptr;   // from the route kernel
  const int32_t* chunkCounts = nullptr;  // from the route kernel
  int32_t* chunkBase = nullptr;          // [chunkCount][countStride] scratch: first plan row of each chunk per expert
  ExpertPlanLayout out;                  // the core's plan layout; rowToken and rowWeight hold tokens * kMax rows
  int32_t* tileExpert = nullptr;         // [maxTiles(tokens * kMax, experts, tileRows)]
  int32_t* tileRowStart = nullptr;
  int32_t* tileCount = nullptr;  // [1]
};
inline int maxTiles(int rows, int groups, int tileRows) { return rows / tileRows + groups + 1; }
void launchPlan(const PlanLaunch& launch, cudaStream_t stream);

// ---- grouped GEMMs (gemm_simt_f32.cu, gemm_mma.cu, expert_gemv.cu) -----------------------------------------
// The core's Epilogue kinds, as the CUDA GEMMs apply them. SwiGlu: weights are gate/up interleaved in blocks of 8
// rows (rows 16b..16b+7: gate 8b..8b+7, rows 16b+8..16b+15: up 8b..8b+7); n/2 output columns, stored in the
// activation dtype. Scaled: n columns, stored as f32.

struct GroupedGemm {
  DType dtype = DType::F32;            // weights and activations (f32, f16 or bf16); accumulation is fp32
  const void* weights = nullptr;       // [groups][n][k], k contiguous (PyTorch Linear layout, padded)
  size_t groupStride = 0;              // elements from one group's weights to the next (bytes when quantized)
  // Quantized weights (quant != None): rows of GGUF blocks, [groups][n][weightRowBytes], k values a row (k a
  // multiple of the block size, zero blocks past the logical columns); `dtype` is then the activations' (f16 or
  // bf16). The GEMV dequantizes each weight group of 16 to fp32; the tensor-core GEMM to `dtype` in shared memory.
  QuantType quant = QuantType::None;
  size_t weightRowBytes = 0;
  int n = 0;                           // output columns of the GEMM (2 * padded ffn for SwiGlu)
  int k = 0;                           // a multiple of 16 (128 for the f16/bf16 paths)
  const void* input = nullptr;         // activations [input rows][inputStride]
  int inputStride = 0;                 // elements
  const int32_t* rowToken = nullptr;   // input row of each plan row (gather); null: plan row r reads input row r
  // Rows of group g are [groupOffsets[g], groupOffsets[g + 1]); null: one group (group 0) of `rows` rows.
  const int32_t* groupOffsets = nullptr;
  int rows = 0;                        // dense case only
  // Tile table (from the plan); null: the dense tiles of `rows` rows, tileRows each.
  const int32_t* tileGroup = nullptr;
  const int32_t* tileRowStart = nullptr;
  const int32_t* tileCount = nullptr;
  int maxTiles = 0;                    // upper bound on *tileCount (grid sizing)
  int tileRows = 0;                    // BM the tile table was built for
  const float* rowScale = nullptr;     // Scaled only: per plan row
  void* output = nullptr;              // [plan rows][outputStride]
  int outputStride = 0;                // elements
  int32_t* rowsComputed = nullptr;     // [groups]: rows each group's GEMM multiplied (added to), or null
  int multiprocessors = 0;             // for persistent grids
};

// Rows per tile of each path (the plan's tileRows must match the kernel that consumes it).
constexpr int kSimtTileRows = 64;
int mmaTileRows(int expectedRowsPerGroup);  // 64 or 128
// Decode path: every group has at most this many rows (tokens <= this), weights streamed once.
constexpr int kGemvMaxRows = 16;

void launchGemmSimtF32(const GroupedGemm& gemm, Epilogue epilogue, cudaStream_t stream);
void launchGemmMma(const GroupedGemm& gemm, Epilogue epilogue, cudaStream_t stream);
// Decode: groupOffsets must be set (or rows <= kGemvMaxRows); ignores the tile table. Grid: column blocks x groups.
// Quantized weights go to launchQuantGemv.
void launchExpertGemv(const GroupedGemm& gemm, int groups, Epilogue epilogue, cudaStream_t stream);
void launchQuantGemv(const GroupedGemm& gemm, int groups, Epilogue epilogue, cudaStream_t stream);

// ---- biases and other activations (expert_bias_kernels.cu), for layers like gpt-oss's ------------------------------
// logits [tokens][experts] += bias [experts], before routing.
void launchAddRouterBias(float* logits, int tokens, int experts, const float* bias, cudaStream_t stream);

// GEMM 1 run with the Scaled epilogue wrote raw gate/up sums (f32, the SwiGlu interleave of 8 rows); this adds the
// row's expert's gate and up biases and applies the activation, into `out` (dtype) [rows][outStride].
struct ActivateLaunch {
  const float* raw = nullptr;             // [rows][rawStride], rawStride >= 2 * paddedFfn
  size_t rawStride = 0;
  int rows = 0;
  int paddedFfn = 0;
  const int32_t* expertOffsets = nullptr;  // device [experts + 1]: row r's expert; null: no biases (shared expert)
  int experts = 0;
  const float* gateBias = nullptr;         // device [experts][paddedFfn] or null
  const float* upBias = nullptr;
  // Llama 4: routed row r's weight scales its raw sums, W (w x) = w (W x); null: none (or the shared expert).
  const float* inputWeight = nullptr;
  ExpertActivation activation = ExpertActivation::SwiGlu;
  float limit = 7.0f;                      // SwiGluOai
  float alpha = 1.702f;
  DType dtype = DType::BF16;
  void* out = nullptr;
  size_t outStride = 0;
};
void launchActivate(const ActivateLaunch& launch, cudaStream_t stream);

// rowOutput[r] += rowWeight[r] x downBias[expert of r] for the routed rows (expertOffsets[experts] of them, at most
// maxRows), after GEMM 2.
struct DownBiasLaunch {
  float* rowOutput = nullptr;
  size_t outputStride = 0;
  int maxRows = 0;
  int hidden = 0;
  const int32_t* expertOffsets = nullptr;
  int experts = 0;
  const float* rowWeight = nullptr;
  const float* downBias = nullptr;  // [experts][biasStride]
  size_t biasStride = 0;
};
void launchAddDownBias(const DownBiasLaunch& launch, cudaStream_t stream);

// ---- input conversion and finalize (convert_input.cu, finalize_kernel.cu) ---------------------------------------
// x [tokens][hidden] f32 -> xF32 [tokens][paddedHidden] (zero padded) and, for f16/bf16, xAct in that dtype.
void launchConvertInput(const float* x, int tokens, int hidden, int paddedHidden, float* xF32, void* xAct,
                        DType dtype, cudaStream_t stream);

struct FinalizeLaunch {
  int tokens = 0;
  int hidden = 0;
  int paddedHidden = 0;
  int kMax = 0;
  const int32_t* counts = nullptr;
  const int32_t* slotRow = nullptr;
  const float* rowOutput = nullptr;         // [plan rows][paddedHidden], already scaled by the routing weight
  const float* sharedOutput = nullptr;      // [tokens][paddedHidden] or null
  const float* sharedGateWeight = nullptr;  // [paddedHidden] or null: shared output scaled by sigmoid(w . x)
  const float* xF32 = nullptr;              // [tokens][paddedHidden], for the shared gate and identity experts
  // Zero-computation experts (LongCat-Flash): slots whose id is >= experts have no row; with identityExperts set
  // they add weight x the token's input, else nothing.
  const int32_t* ids = nullptr;             // [tokens][kMax], or null when the layer has none
  const float* slotWeights = nullptr;       // [tokens][kMax]
  int experts = 0;
  bool identityExperts = false;
  float* out = nullptr;                     // [tokens][outStride]
  int outStride = 0;                        // 0: hidden
};
// out[t] = sum of t's slots in slot order (+ shared expert): a block per token, fixed order, no atomics.
void launchFinalize(const FinalizeLaunch& launch, cudaStream_t stream);

}  // namespace dynamoe::cuda
