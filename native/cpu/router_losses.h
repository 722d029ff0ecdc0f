// The seed paper's router training losses (dynamic/entropy loss and load-balance loss) and their logit gradients.
#pragma once

#include <cstdint>

#include "../core/routing_policy.h"

namespace dynamoe::cpu {

// Caller-owned outputs. The gradient pointers may be null (not computed); the others are required.
struct RouterLossOutput {
  double* fraction = nullptr;               // [experts] f_i: fraction of tokens whose selected set contains i
  double* meanProbability = nullptr;        // [experts] Q_i: mean over tokens of the full-softmax P_ti
  int32_t* counts = nullptr;                // [tokens] |S_t|
  float* dynamicLossGradient = nullptr;     // [tokens * experts] dL_d/dz, or null
  float* loadBalanceLossGradient = nullptr;  // [tokens * experts] dL_b/dz, or null
};

struct RouterLossValues {
  double dynamicLoss = 0.0;      // L_d = mean_t H_t, H_t = -sum_i P_ti log P_ti
  double loadBalanceLoss = 0.0;  // L_b = E * sum_i f_i Q_i
  double expertsPerToken = 0.0;  // mean |S_t|
};

// From `tokens` rows of `experts` finite fp32 logits (contiguous): selection S_t exactly as routeTokens makes it
// (fp32, ROUTING.md), P in double. Gradients in double, stored as float; f is a constant in dL_b/dz (selection has
// no gradient). Deterministic whatever the thread count.
RouterLossValues computeRouterLosses(const float* logits, int tokens, int experts, const RoutingPolicy& policy,
                                     const RouterLossOutput& out);

}  // namespace dynamoe::cpu
