// CPU routing: fp32 softmax over the router logits, then top-k / top-p / threshold selection (ROUTING.md).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../routing_policy.h"

namespace dynamoe::cpu {

// Caller-owned fixed-shape outputs: ids/weights are [tokens][kMax] (unused slots: -1 / 0).
struct RoutingOutput {
  int kMax = 0;
  int32_t* ids = nullptr;
  float* weights = nullptr;
  int32_t* counts = nullptr;      // [tokens]
  int32_t* expertLoad = nullptr;  // [experts]
};

enum class RouterInput { Logits, Probabilities };

// Routes `tokens` rows of `experts` scores (row stride `stride` floats). Scores must be finite.
void routeTokens(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
                 const RoutingPolicy& policy, const RoutingOutput& out);

}  // namespace dynamoe::cpu
