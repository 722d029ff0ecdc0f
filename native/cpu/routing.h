// CPU routing: fp32 softmax over the router logits, then the core's selection rules (ROUTING.md); the families'
// router rules through the core's router_select.h.
#pragma once

#include <cstddef>

#include "../core/router_rule.h"
#include "../core/routing_output.h"
#include "../core/routing_policy.h"

namespace dynamoe::cpu {

// Routes `tokens` rows of `experts` scores (row stride `stride`). Scores must be finite. A rule other than the plain
// softmax router takes logits only (router_select.h).
void routeTokens(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
                 const RoutingPolicy& policy, const RouterRule& rule, const RoutingOutput& out);

}  // namespace dynamoe::cpu
