#include "router_rule.h"

#include <cmath>
#include <string>

namespace dynamoe {

const char* routerScoringName(RouterScoring scoring) {
  switch (scoring) {
    case RouterScoring::Softmax: return "softmax";
    case RouterScoring::Sigmoid: return "sigmoid";
    case RouterScoring::SoftmaxOfKept: return "softmax-of-kept";
  }
  return "?";
}

namespace {
[[noreturn]] void fail(const std::string& message) { throw Error(code::kPolicy, message); }
}  // namespace

void validateRouterRule(const RouterRule& rule, const RoutingPolicy& policy, int experts) {
  if (!(std::isfinite(rule.scale) && rule.scale > 0.0f)) fail("router scale must be a finite number > 0");
  int candidates = experts;
  if (rule.groups > 1) {
    if (experts % rule.groups != 0) {
      fail("router groups (" + std::to_string(rule.groups) + ") must divide the experts (" + std::to_string(experts) +
           ")");
    }
    if (rule.keptGroups < 1 || rule.keptGroups > rule.groups) {
      fail("router keptGroups must be an integer in [1, " + std::to_string(rule.groups) + "], got " +
           std::to_string(rule.keptGroups));
    }
    candidates = experts / rule.groups * rule.keptGroups;
  } else if (rule.groups < 0) {
    fail("router groups must be 0 or more, got " + std::to_string(rule.groups));
  }
  // The selection walks the kept groups' experts only: it cannot keep more than they hold.
  const int needed = policy.kind == PolicyKind::TopK ? policy.k : policy.minExperts;
  if (needed > candidates) {
    fail(std::string(policyKindName(policy.kind)) + (policy.kind == PolicyKind::TopK ? " k (" : " minExperts (") +
         std::to_string(needed) + ") exceeds the " + std::to_string(candidates) +
         " experts of the router's kept groups");
  }
}

}  // namespace dynamoe
