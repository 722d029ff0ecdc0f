// The selection rules of every routing policy (ROUTING.md), written once for the CPU and CUDA routers: which
// expert ranks first, when selection stops (the top-p cut, the threshold, the min/max clamps) and the weight factor.
// Both backends walk the experts in rank order and call these, so they keep the same experts with the same weights.
#pragma once

#include "host_device.h"
#include "routing_policy.h"

namespace dynamoe::routing_rules {

// The one tie rule: probability descending, then lower expert id first.
DYNAMOE_HOST_DEVICE inline bool ranksBefore(float probabilityA, int idA, float probabilityB, int idB) {
  return probabilityA > probabilityB || (probabilityA == probabilityB && idA < idB);
}

// Most experts a token can keep under `policy` (the top-k k, else the maxExperts clamp).
DYNAMOE_HOST_DEVICE inline int keptLimit(const RoutingPolicy& policy, int experts) {
  return policy.kind == PolicyKind::TopK ? policy.k : policy.maxKept(experts);
}

// Selection so far: experts kept, in rank order, and their probabilities summed in that order.
struct Selection {
  int kept = 0;
  // In double and in rank order: exact enough that only a true tie with p sits on the top-p boundary, and every
  // backend that sums in this order and precision cuts at the same expert.
  double keptSum = 0.0;
  bool cut = false;  // top-p: the running sum has passed p
};

// Whether selection stops before the next-ranked expert, whose probability is `nextProbability`.
DYNAMOE_HOST_DEVICE inline bool stopsBefore(const RoutingPolicy& policy, int experts, const Selection& s,
                                            float nextProbability) {
  if (s.kept >= keptLimit(policy, experts)) return true;
  if (policy.kind == PolicyKind::TopK || s.kept < policy.minExperts) return false;
  if (policy.kind == PolicyKind::TopP) return s.cut;
  return !(nextProbability >= policy.tau);  // threshold
}

// Keeps the next-ranked expert.
DYNAMOE_HOST_DEVICE inline void keep(const RoutingPolicy& policy, Selection& s, float probability) {
  s.keptSum += static_cast<double>(probability);
  // p = 1 keeps all, even where rounding takes the running sum past 1 early.
  if (policy.kind == PolicyKind::TopP && policy.p < 1.0f && s.keptSum > static_cast<double>(policy.p)) s.cut = true;
  ++s.kept;
}

// The factor every kept probability is multiplied by: 1 / keptSum when normalising (kept probabilities that are all
// 0, possible only with probabilities as input, stay 0 instead of 0/0 = NaN), times scale for top-k.
DYNAMOE_HOST_DEVICE inline double weightFactor(const RoutingPolicy& policy, double keptSum) {
  double factor = policy.normalize && keptSum > 0.0 ? 1.0 / keptSum : 1.0;
  if (policy.kind == PolicyKind::TopK) factor *= policy.scale;
  return factor;
}

}  // namespace dynamoe::routing_rules
