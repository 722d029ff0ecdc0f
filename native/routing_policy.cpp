#include "routing_policy.h"

#include <cmath>

namespace dynamoe {

const char* policyKindName(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::TopK: return "top-k";
    case PolicyKind::TopP: return "top-p";
    case PolicyKind::Threshold: return "threshold";
  }
  return "?";
}

namespace {
[[noreturn]] void fail(const std::string& message) { throw Error(code::kPolicy, message); }

void checkClamps(const RoutingPolicy& policy, int experts) {
  const std::string kind = policyKindName(policy.kind);
  if (policy.minExperts < 1 || policy.minExperts > experts) {
    fail(kind + " minExperts must be an integer in [1, " + std::to_string(experts) + "], got " +
         std::to_string(policy.minExperts));
  }
  const int maxKept = policy.maxKept(experts);
  if (maxKept < 1 || maxKept > experts) {
    fail(kind + " maxExperts must be an integer in [1, " + std::to_string(experts) + "], got " +
         std::to_string(policy.maxExperts));
  }
  if (policy.minExperts > maxKept) {
    fail(kind + " minExperts (" + std::to_string(policy.minExperts) + ") must not exceed maxExperts (" +
         std::to_string(maxKept) + ")");
  }
}
}  // namespace

void validatePolicy(const RoutingPolicy& policy, int experts) {
  switch (policy.kind) {
    case PolicyKind::TopK:
      if (policy.k < 1 || policy.k > experts) {
        fail("top-k k must be an integer in [1, " + std::to_string(experts) + "] (the number of experts), got " +
             std::to_string(policy.k));
      }
      if (!std::isfinite(policy.scale) || policy.scale <= 0.0f) {
        fail("top-k scale must be a finite number > 0, got " + std::to_string(policy.scale));
      }
      return;
    case PolicyKind::TopP:
      if (!(policy.p > 0.0f && policy.p <= 1.0f)) {
        fail("top-p p must be in (0, 1] (p = 1 keeps every expert), got " + std::to_string(policy.p));
      }
      checkClamps(policy, experts);
      return;
    case PolicyKind::Threshold:
      if (!(policy.tau >= 0.0f && policy.tau <= 1.0f)) {
        fail("threshold tau must be in [0, 1], got " + std::to_string(policy.tau));
      }
      checkClamps(policy, experts);
      return;
  }
}

}  // namespace dynamoe
