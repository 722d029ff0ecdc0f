// The experts' activation as a step of its own, for layers the fused SwiGLU epilogue cannot run: expert biases on
// gate/up/down, or gpt-oss's clamped SwiGLU. The gate/up GEMM then writes its raw sums (Epilogue::Scaled, row scale
// 1: per panel 16 gate then 16 up columns, packGateUp's order), and these passes finish the rows.
#pragma once

#include <cstddef>
#include <vector>

#include "../core/moe_config.h"
#include "expert_plan.h"

namespace dynamoe::cpu {

// Per expert (index e; null vectors where an expert has no such bias) the biases the passes add.
struct ExpertBiases {
  std::vector<const float*> gate, up, down;
};

// intermediate row r, column f (< ffn) = activation(gate f + gate bias, up f + up bias) of raw row r; rows past the
// plan's routed rows (the shared expert's, of sharedFfn columns) take no bias. Columns past ffn are zeroed.
void activateGateUpRows(const ExpertPlan& plan, int experts, const ExpertBiases& biases, const MoeLayerConfig& config,
                        int sharedFfn,
                        const float* raw, size_t rawStride, float* intermediate, size_t intermediateStride);

// rowOutput row r += rowWeight[r] * down bias of its expert, for the routed rows of experts with a down bias.
void addDownBiasRows(const ExpertPlan& plan, int experts, const ExpertBiases& biases, int hidden, float* rowOutput,
                     size_t outputStride);

}  // namespace dynamoe::cpu
