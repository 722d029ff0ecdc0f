// CPU routing: fp32 softmax over the router logits, then the core's selection rules (ROUTING.md).
#pragma once

#include <cstddef>

#include "../core/routing_output.h"
#include "../core/routing_policy.h"

namespace dynamoe::cpu {

// Routes `tokens` rows of `experts` scores (row stride `stride`). Scores must be finite.
void routeTokens(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
                 const RoutingPolicy& policy, const RoutingOutput& out);

}  // namespace dynamoe::cpu
