// Deterministic per-token combine: each token sums its expert rows in slot order (no atomics), then its
// shared-expert rows.
#pragma once

#include <cstddef>

#include "expert_plan.h"

namespace dynamoe::cpu {

void combineExpertRows(const ExpertPlan& plan, const RoutingOutput& routing, int tokens, int hidden,
                       int sharedRowsPerToken, const float* rowOutput, size_t rowStride, float* out,
                       size_t outStride);

}  // namespace dynamoe::cpu
