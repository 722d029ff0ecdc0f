// A MoE layer as every backend receives it: its shape, the weight sources it packs or uploads from, and what a
// forward may report besides its output.
#pragma once

#include <cstdint>
#include <vector>

#include "dtype.h"
#include "quant_type.h"
#include "router_rule.h"

namespace dynamoe {

// A row-major [rows][cols] matrix in PyTorch Linear layout (out_features x in_features), read-only.
// A [rows][cols] weight matrix as the caller holds it: f32 / 16-bit values of `dtype`, or, when `quant` is set, rows
// of GGUF quantized blocks (quant.h).
struct MatrixSource {
  const void* data = nullptr;
  DType dtype = DType::F32;
  QuantType quant = QuantType::None;
};

struct ExpertSources {
  MatrixSource gate;  // [ffn][hidden]
  MatrixSource up;    // [ffn][hidden]
  MatrixSource down;  // [hidden][ffn]
  // Optional biases of each projection (gpt-oss): [ffn], [ffn], [hidden]; null means none.
  const float* gateBias = nullptr;
  const float* upBias = nullptr;
  const float* downBias = nullptr;
};

struct SharedExpertSources {
  int ffn = 0;
  ExpertSources weights;
  const float* gateWeight = nullptr;  // [hidden]; when set, the shared output is scaled by sigmoid(gateWeight . x)
};

// What a routed slot of a zero-computation expert adds (LongCat-Flash): nothing, or the input times its weight.
enum class ZeroExpertKind { Zero, Identity };

// What an expert computes between its gate/up and down projections.
enum class ExpertActivation {
  SwiGlu,     // silu(gate) * up
  SwiGluOai,  // gpt-oss: g = min(gate, limit), u = clamp(up, -limit, limit), (u + 1) * g * sigmoid(alpha * g)
};

struct MoeLayerConfig {
  int hidden = 0;
  int ffn = 0;
  int experts = 0;           // FFN experts (router ids 0..experts-1)
  DType dtype = DType::F32;  // of the experts in memory; the router is always f32
  // The family's router rule; its selectionBias points at the holder's copy ([routedSlots()]) or is null.
  RouterRule router;
  int zeroExperts = 0;  // router ids experts..experts+zeroExperts-1 cost no GEMM
  ZeroExpertKind zeroKind = ZeroExpertKind::Identity;

  ExpertActivation activation = ExpertActivation::SwiGlu;
  float activationLimit = 7.0f;    // SwiGluOai's clamp
  float activationAlpha = 1.702f;  // SwiGluOai's sigmoid slope
  // Llama 4: a routed row's weight scales the expert's input, not its output. Without biases W (w x) = w (W x), so the
  // raw gate/up sums are scaled before the activation and the down projection's row is left unscaled.
  bool weightOnInput = false;

  // What the router scores and routing policies count: FFN experts and zero-computation experts.
  int routedSlots() const { return experts + zeroExperts; }
};

// Everything a backend needs to build a MoE layer; the pointed-to data is only read while the layer is built.
struct MoeWeights {
  MoeLayerConfig config;
  const float* router = nullptr;  // [routedSlots][hidden]
  const float* routerBias = nullptr;  // [routedSlots], added to the router logits before routing (gpt-oss); or null
  std::vector<ExpertSources> experts;
  bool hasShared = false;
  SharedExpertSources shared;
};

// Whether a layer has a router bias, expert biases or an activation other than SwiGLU (backends without them refuse).
inline bool hasBiasesOrActivation(const MoeWeights& weights) {
  if (weights.routerBias != nullptr || weights.config.activation != ExpertActivation::SwiGlu) return true;
  for (const ExpertSources& e : weights.experts) {
    if (e.gateBias != nullptr || e.upBias != nullptr || e.downBias != nullptr) return true;
  }
  return false;
}

// Router statistics summed over a forward's tokens (filled when requested).
struct RouterStatsSums {
  double* probabilitySum = nullptr;  // [experts]: sum over tokens of the full-softmax P_e
  double* entropySum = nullptr;      // [1]: sum over tokens of -sum_e P_e log P_e
};

// Rows each expert's GEMMs multiplied in one forward (filled by the kernels, so tests can hold them to the routing).
struct WorkCounters {
  int32_t* gateUpRows = nullptr;  // [experts]
  int32_t* downRows = nullptr;    // [experts]
};

// Kernel time of each stage of one forward, in microseconds, averaged over the profiled runs.
struct StageTimes {
  double routeUs = 0;     // router logits GEMM + fused softmax/selection
  double planUs = 0;      // expert offsets, row plan and tile table
  double gemm1Us = 0;     // grouped GEMM 1 + SwiGLU
  double gemm2Us = 0;     // grouped GEMM 2 x routing weight
  double finalizeUs = 0;  // per-token sum (+ shared expert)
  double totalUs = 0;     // the whole forward on the device, copies excluded
  int runs = 0;
};

}  // namespace dynamoe
