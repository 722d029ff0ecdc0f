// One token's selection under a family's router rule (router_rule.h) and a routing policy, written once for the CPU
// and CUDA routers (README "Routers"): scores, selection keys, group limiting, the policy's cut over the candidates'
// share of the score, and the family's weights. Serial per token; both backends run this very code, so they keep
// the same experts with the same weight bits.
#pragma once

#include <cstdint>

#include "host_device.h"
#include "router_rule.h"
#include "routing_math.h"
#include "routing_rules.h"

namespace dynamoe::router_select {

// Per-token scratch: `experts` entries each.
struct Scratch {
  float* score = nullptr;  // softmax P or sigmoid s: what the weights are made of
  float* key = nullptr;    // what experts are ranked by: score (or logit) + selection bias
  float* share = nullptr;  // what the policy's cut reads: the score's share among the candidates
  int32_t* state = nullptr;
};

namespace detail {

constexpr int32_t kCandidate = 0;
constexpr int32_t kTaken = 1;
constexpr int32_t kOutsideGroups = 2;

DYNAMOE_HOST_DEVICE inline float groupScore(const RouterRule& rule, const float* key, int first, int size) {
  float best = key[first];
  int bestAt = first;
  for (int e = first + 1; e < first + size; ++e) {
    if (key[e] > best) {
      best = key[e];
      bestAt = e;
    }
  }
  if (rule.groupScore == GroupScore::Max || size == 1) return best;
  float second = 0.0f;
  bool found = false;
  for (int e = first; e < first + size; ++e) {
    if (e != bestAt && (!found || key[e] > second)) {
      second = key[e];
      found = true;
    }
  }
  return routing_math::add(best, second);
}

// Marks the experts of every group but the rule's best `keptGroups` (group score descending, lower group first).
DYNAMOE_HOST_DEVICE inline void limitToGroups(const RouterRule& rule, int experts, const float* key, float* groupScores,
                                              int32_t* state) {
  const int size = experts / rule.groups;
  for (int g = 0; g < rule.groups; ++g) groupScores[g] = groupScore(rule, key, g * size, size);
  for (int e = 0; e < experts; ++e) state[e] = kOutsideGroups;
  for (int kept = 0; kept < rule.keptGroups; ++kept) {
    int best = -1;
    for (int g = 0; g < rule.groups; ++g) {
      if (state[g * size] != kOutsideGroups) continue;  // already kept
      if (best < 0 || routing_rules::ranksBefore(groupScores[g], g, groupScores[best], best)) best = g;
    }
    for (int e = best * size; e < (best + 1) * size; ++e) state[e] = kCandidate;
  }
}

// The best-ranked candidate left (key descending, lower id first), or -1.
DYNAMOE_HOST_DEVICE inline int nextCandidate(int experts, const float* key, const int32_t* state) {
  int best = -1;
  for (int e = 0; e < experts; ++e) {
    if (state[e] != kCandidate) continue;
    if (best < 0 || routing_rules::ranksBefore(key[e], e, key[best], best)) best = e;
  }
  return best;
}

}  // namespace detail

// Routes one token's finite `logits` ([experts]) into ids / weights ([kMax]); returns how many experts it keeps.
//  1. score: softmax P over all experts (Softmax, SoftmaxOfKept) or sigmoid s of each logit (Sigmoid);
//  2. key: score (the logit for SoftmaxOfKept) plus the selection bias: only ranking reads it;
//  3. groups: only experts of the keptGroups best groups stay candidates;
//  4. share: P as is without groups; otherwise each candidate's score over the candidates' sum (double, id order);
//  5. the policy's rules walk the candidates in key order, cutting on share (top-p's running sum, threshold);
//  6. weights: the kept scores (SoftmaxOfKept: a softmax over the kept logits), renormalised when the policy or
//     the family says so, times the policy's top-k scale and the family's scale.
DYNAMOE_HOST_DEVICE inline int routeToken(const float* logits, int experts, const RouterRule& rule,
                                          const RoutingPolicy& policy, int kMax, const Scratch& s, int32_t* ids,
                                          float* weights) {
  if (rule.scoring == RouterScoring::Sigmoid) {
    for (int e = 0; e < experts; ++e) s.score[e] = routing_math::routingSigmoid(logits[e]);
  } else {
    routing_math::softmaxRow(logits, experts, s.score);
  }
  const float* ranked = rule.scoring == RouterScoring::SoftmaxOfKept ? logits : s.score;
  for (int e = 0; e < experts; ++e) {
    s.key[e] = rule.selectionBias ? routing_math::add(ranked[e], rule.selectionBias[e]) : ranked[e];
    s.state[e] = detail::kCandidate;
  }
  if (rule.grouped()) detail::limitToGroups(rule, experts, s.key, s.share, s.state);
  if (rule.scoring == RouterScoring::Sigmoid || rule.grouped()) {
    double total = 0.0;
    for (int e = 0; e < experts; ++e) {
      if (s.state[e] == detail::kCandidate) total += static_cast<double>(s.score[e]);
    }
    for (int e = 0; e < experts; ++e) {
      s.share[e] = total > 0.0 && s.state[e] == detail::kCandidate ? static_cast<float>(s.score[e] / total) : 0.0f;
    }
  } else {
    for (int e = 0; e < experts; ++e) s.share[e] = s.score[e];
  }

  routing_rules::Selection selection;
  for (;;) {
    const int next = detail::nextCandidate(experts, s.key, s.state);
    if (next < 0 || routing_rules::stopsBefore(policy, experts, selection, s.share[next])) break;
    ids[selection.kept] = next;
    routing_rules::keep(policy, selection, s.share[next]);
    s.state[next] = detail::kTaken;
  }
  const int kept = selection.kept;

  double factor = rule.scale;
  if (policy.kind == PolicyKind::TopK) factor *= policy.scale;
  if (rule.scoring == RouterScoring::SoftmaxOfKept) {
    float maxLogit = logits[ids[0]];
    for (int j = 1; j < kept; ++j) maxLogit = logits[ids[j]] > maxLogit ? logits[ids[j]] : maxLogit;
    double sum = 0.0;
    for (int j = 0; j < kept; ++j) {
      weights[j] = routing_math::routingExp(routing_math::add(logits[ids[j]], -maxLogit));
      sum += static_cast<double>(weights[j]);
    }
    factor /= sum;  // >= 1: the largest kept logit contributes exp(0) = 1
  } else {
    double sum = 0.0;
    for (int j = 0; j < kept; ++j) {
      weights[j] = s.score[ids[j]];
      sum += static_cast<double>(weights[j]);
    }
    // Kept scores that are all 0 (sigmoids of logits below -104) stay 0 instead of 0/0 = NaN.
    if ((policy.normalize || rule.normalize) && sum > 0.0) factor /= sum;
  }
  for (int j = 0; j < kMax; ++j) {
    const bool used = j < kept;
    if (!used) ids[j] = -1;
    weights[j] = used ? static_cast<float>(static_cast<double>(weights[j]) * factor) : 0.0f;
  }
  return kept;
}

}  // namespace dynamoe::router_select
