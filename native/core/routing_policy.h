// A routing policy (ROUTING.md): which experts each token keeps and with what weight.
#pragma once

#include <string>

#include "errors.h"
#include "host_device.h"

namespace dynamoe {

enum class PolicyKind { TopK, TopP, Threshold };

struct RoutingPolicy {
  PolicyKind kind = PolicyKind::TopK;
  int k = 0;          // top-k
  float p = 0.0f;     // top-p: keep the shortest prefix whose cumulative probability is > p (compared in fp32)
  float tau = 0.0f;   // threshold: keep every expert with probability >= tau
  int minExperts = 1;  // top-p / threshold clamps, applied after the cut
  int maxExperts = 0;  // 0 means "all experts"
  bool normalize = false;  // divide the kept weights by their sum
  float scale = 1.0f;  // top-k: multiply the weights (DeepSeek routed_scaling_factor)

  // Slots per token in the fixed-shape routing output.
  DYNAMOE_HOST_DEVICE int kMax(int experts) const {
    if (kind == PolicyKind::TopK) return k;
    return maxExperts > 0 ? maxExperts : experts;
  }
  DYNAMOE_HOST_DEVICE int maxKept(int experts) const { return maxExperts > 0 ? maxExperts : experts; }
};

const char* policyKindName(PolicyKind kind);
// Throws Error(ERR_DYNAMOE_POLICY) when the policy cannot be applied to `experts` experts.
void validatePolicy(const RoutingPolicy& policy, int experts);

}  // namespace dynamoe
