// The stages of a MoE block shared by every backend (DESIGN.md, "The MoE block"): the plan's layout, the epilogue
// kinds of the two grouped GEMMs and the shared expert's gate.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace dynamoe {

// The plan: routed (token, expert) pairs grouped by expert, each expert's rows contiguous and in token order
// (deterministic). Shared-expert rows, where a backend plans them, follow the routed ones.
struct ExpertPlanLayout {
  int32_t* expertOffsets = nullptr;  // [experts + 1]: rows of expert e are [expertOffsets[e], expertOffsets[e + 1])
  int32_t* rowToken = nullptr;       // [rows]: token each row reads
  float* rowWeight = nullptr;        // [rows]: routing weight applied to each row's expert output
  int32_t* slotRow = nullptr;        // [tokens][kMax]: row holding each used slot, -1 for unused slots
};

// What a grouped GEMM does with its accumulators (how gate and up are interleaved is each backend's packing).
enum class Epilogue {
  SwiGlu,  // output column f = silu(gate f) * up f: half the weight columns
  Scaled,  // output = accumulator * rowScale[row] (1 when there is no row scale)
};

// The shared expert's gate from the dot product of its gate weights with the token: sigmoid(dot).
DYNAMOE_HOST_DEVICE inline float sharedExpertGate(float dot) {
#ifdef __CUDA_ARCH__
  return 1.0f / (1.0f + expf(-dot));
#else
  return 1.0f / (1.0f + std::exp(-dot));
#endif
}

}  // namespace dynamoe
