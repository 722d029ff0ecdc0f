#include "expert_activation.h"

#include <algorithm>
#include <cmath>

#include "thread_pool.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {

namespace {

// The expert of plan row `row`, or `experts` for the rows after the routed ones.
int expertOfRow(const ExpertPlan& plan, int experts, int row) {
  const int32_t* offsets = plan.arrays.expertOffsets;
  return static_cast<int>(std::upper_bound(offsets, offsets + experts + 1, row) - offsets) - 1;
}

}  // namespace

void activateGateUpRows(const ExpertPlan& plan, int experts, const ExpertBiases& biases, const MoeLayerConfig& config,
                        int sharedFfn, const float* raw, size_t rawStride, float* intermediate, size_t intermediateStride) {
  const bool oai = config.activation == ExpertActivation::SwiGluOai;
  const float limit = config.activationLimit;
  const float alpha = config.activationAlpha;
  // Rows in parallel: each row's values depend on that row alone (batch invariance).
  cpuThreadPool().parallelFor(static_cast<size_t>(plan.rows), [&](size_t r) {
    const int row = static_cast<int>(r);
    const int expert = std::min(expertOfRow(plan, experts, row), experts);
    const int ffn = expert < experts ? config.ffn : sharedFfn;
    const float* gateBias = expert < experts ? biases.gate[expert] : nullptr;
    const float* upBias = expert < experts ? biases.up[expert] : nullptr;
    const float* in = raw + r * rawStride;
    float* out = intermediate + r * intermediateStride;
    // Llama 4: the routed row's weight on the expert's input, W (w x) = w (W x) (such layers have no biases).
    const float inputWeight = config.weightOnInput && expert < experts ? plan.arrays.rowWeight[r] : 1.0f;
    for (int f = 0; f < ffn; ++f) {
      // packGateUp's order: panel f / 16 holds 16 gate columns, then the same 16 up columns.
      const size_t column = static_cast<size_t>(f / kSwiGluColumns) * kPanelWidth + f % kSwiGluColumns;
      float gate = inputWeight * in[column] + (gateBias ? gateBias[f] : 0.0f);
      float up = inputWeight * in[column + kSwiGluColumns] + (upBias ? upBias[f] : 0.0f);
      if (oai) {
        // gpt-oss clamps both halves, then gates with a sharper sigmoid and an offset up.
        gate = std::min(gate, limit);
        up = std::min(std::max(up, -limit), limit);
        out[f] = (up + 1.0f) * (gate / (1.0f + std::exp(-alpha * gate)));
      } else {
        out[f] = gate / (1.0f + std::exp(-gate)) * up;
      }
    }
    std::fill(out + ffn, out + intermediateStride, 0.0f);
  });
}

void addDownBiasRows(const ExpertPlan& plan, int experts, const ExpertBiases& biases, int hidden, float* rowOutput,
                     size_t outputStride) {
  cpuThreadPool().parallelFor(static_cast<size_t>(plan.routedRows), [&](size_t r) {
    const int expert = expertOfRow(plan, experts, static_cast<int>(r));
    const float* bias = biases.down[expert];
    if (bias == nullptr) return;
    // The down GEMM already scaled the row by its routing weight: (h W + b) w = h W w + b w.
    const float weight = plan.arrays.rowWeight[r];
    float* out = rowOutput + r * outputStride;
    for (int h = 0; h < hidden; ++h) out[h] += weight * bias[h];
  });
}

}  // namespace dynamoe::cpu
