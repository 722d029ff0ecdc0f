#include "routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../core/routing_math.h"
#include "../core/routing_rules.h"
#include "thread_pool.h"

namespace dynamoe::cpu {

namespace {

constexpr int kTokensPerItem = 64;

// Probabilities of one token, in fp32, in expert order, computed exactly as the CUDA router does (routing_math.h):
// same exp, same lane-by-lane double sums. Sums are in double: in fp32 the small terms added after a dominant one
// are lost (one logit of 18 among 100 zeros would give P = 1.0 instead of 0.9999985).
void softmaxRow(const float* logits, int experts, float* probs) {
  float maxLogit = logits[0];
  for (int e = 1; e < experts; ++e) maxLogit = std::max(maxLogit, logits[e]);
  double lanes[routing_math::kLanes] = {};
  for (int e = 0; e < experts; ++e) {
    probs[e] = routing_math::routingExp(logits[e] - maxLogit);
    lanes[e % routing_math::kLanes] += probs[e];
  }
  const double sum = routing_math::reduceLanes(lanes);
  for (int e = 0; e < experts; ++e) probs[e] = static_cast<float>(probs[e] / sum);
}

void routeRow(const float* scores, int experts, RouterInput input, const RoutingPolicy& policy, int kMax,
              float* probs, int* order, int32_t* ids, float* weights, int32_t* count) {
  if (input == RouterInput::Logits) {
    softmaxRow(scores, experts, probs);
  } else {
    std::copy(scores, scores + experts, probs);
  }
  std::iota(order, order + experts, 0);
  const auto before = [probs](int a, int b) { return routing_rules::ranksBefore(probs[a], a, probs[b], b); };
  if (policy.kind == PolicyKind::TopK) {
    std::partial_sort(order, order + policy.k, order + experts, before);
  } else {
    std::sort(order, order + experts, before);
  }
  routing_rules::Selection selection;
  while (selection.kept < experts &&
         !routing_rules::stopsBefore(policy, experts, selection, probs[order[selection.kept]])) {
    routing_rules::keep(policy, selection, probs[order[selection.kept]]);
  }
  const int kept = selection.kept;
  const double factor = routing_rules::weightFactor(policy, selection.keptSum);
  for (int j = 0; j < kMax; ++j) {
    const bool used = j < kept;
    ids[j] = used ? order[j] : -1;
    weights[j] = used ? static_cast<float>(probs[order[j]] * factor) : 0.0f;
  }
  *count = kept;
}

}  // namespace

void routeTokens(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
                 const RoutingPolicy& policy, const RoutingOutput& out) {
  const int kMax = out.kMax;
  const size_t items = (static_cast<size_t>(tokens) + kTokensPerItem - 1) / kTokensPerItem;
  cpuThreadPool().parallelFor(items, [&](size_t item) {
    std::vector<float> probs(experts);
    std::vector<int> order(experts);
    const int first = static_cast<int>(item) * kTokensPerItem;
    const int last = std::min(tokens, first + kTokensPerItem);
    for (int t = first; t < last; ++t) {
      routeRow(scores + static_cast<size_t>(t) * stride, experts, input, policy, kMax, probs.data(), order.data(),
               out.ids + static_cast<size_t>(t) * kMax, out.weights + static_cast<size_t>(t) * kMax,
               out.counts + t);
    }
  });
  std::fill(out.expertLoad, out.expertLoad + experts, 0);
  for (size_t slot = 0; slot < static_cast<size_t>(tokens) * kMax; ++slot) {
    if (out.ids[slot] >= 0) ++out.expertLoad[out.ids[slot]];
  }
}

}  // namespace dynamoe::cpu
