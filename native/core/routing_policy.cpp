#include "routing_policy.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

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
// As JavaScript prints the number the caller gave: 1.5, 0.3, NaN, Infinity (not 1.500000).
std::string formatNumber(float value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char text[32];
  for (int digits = 1; digits <= 9; ++digits) {  // the shortest decimal that reads back as the same float
    std::snprintf(text, sizeof(text), "%.*g", digits, static_cast<double>(value));
    if (std::strtof(text, nullptr) == value) break;
  }
  return text;
}

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
        fail("top-k scale must be a finite number > 0, got " + formatNumber(policy.scale));
      }
      return;
    case PolicyKind::TopP:
      if (!(policy.p > 0.0f && policy.p <= 1.0f)) {
        fail("top-p p must be in (0, 1] (p = 1 keeps every expert), got " + formatNumber(policy.p));
      }
      checkClamps(policy, experts);
      return;
    case PolicyKind::Threshold:
      if (!(policy.tau >= 0.0f && policy.tau <= 1.0f)) {
        fail("threshold tau must be in [0, 1], got " + formatNumber(policy.tau));
      }
      checkClamps(policy, experts);
      return;
  }
}

}  // namespace dynamoe
