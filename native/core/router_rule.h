// How a model family's router scores and selects experts (README "Routers"), beside the routing policy that decides
// how many it keeps: softmax or sigmoid scores, a selection-only bias, group-limited candidates, and the family's
// weight rule. The default rule is the plain softmax router every older architecture uses.
#pragma once

#include "routing_policy.h"

namespace dynamoe {

enum class RouterScoring {
  Softmax,        // P = softmax over all experts; weights P (Mixtral, Qwen, OLMoE, DeepSeek v1, LongCat-Flash)
  Sigmoid,        // s = sigmoid of each logit; weights s (DeepSeek-V3, Kimi K2, GLM-4.5)
  SoftmaxOfKept,  // ranked by logit; weights a softmax over the kept experts' logits (gpt-oss, Granite MoE)
};

// A group's score for group-limited selection.
enum class GroupScore {
  Max,      // its best selection score (DeepSeek-V2 group_limited_greedy)
  Top2Sum,  // the sum of its two best selection scores (DeepSeek-V3 noaux_tc)
};

struct RouterRule {
  RouterScoring scoring = RouterScoring::Softmax;
  int groups = 0;      // > 1: experts split into this many equal groups of consecutive ids
  int keptGroups = 0;  // groups whose experts may be selected
  GroupScore groupScore = GroupScore::Top2Sum;
  bool normalize = false;  // the family renormalises the kept weights, whatever the policy says
  float scale = 1.0f;      // the family's weight scale, times the policy's
  const float* selectionBias = nullptr;  // [experts] added to the scores for ranking only, or null

  // The rule of the softmax router the contract's first policies were written for (its fast path).
  bool plain() const {
    return scoring == RouterScoring::Softmax && groups <= 1 && !normalize && scale == 1.0f && selectionBias == nullptr;
  }
  bool grouped() const { return groups > 1; }
};

const char* routerScoringName(RouterScoring scoring);
// Throws Error(ERR_DYNAMOE_POLICY) when the rule cannot route `experts` experts (groups that do not divide them), or
// when `policy` asks for more experts than the rule's candidates hold.
void validateRouterRule(const RouterRule& rule, const RoutingPolicy& policy, int experts);

}  // namespace dynamoe
