// Deterministic per-token combine: each token sums its expert rows in slot order (no atomics; zero-computation
// experts in their slots), then its shared-expert rows.
#pragma once

#include <cstddef>

#include "expert_plan.h"

namespace dynamoe::cpu {

// Slots of zero-computation experts (ids from `experts` on): identity experts add weight * x, zero experts nothing.
struct ZeroExpertRows {
  int experts = 0;
  bool identity = false;
  const float* x = nullptr;
  size_t xStride = 0;
};

void combineExpertRows(const ExpertPlan& plan, const RoutingOutput& routing, int tokens, int hidden,
                       int sharedRowsPerToken, const float* rowOutput, size_t rowStride, const ZeroExpertRows& zero,
                       float* out, size_t outStride);

}  // namespace dynamoe::cpu
