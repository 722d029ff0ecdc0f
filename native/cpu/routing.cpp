#include "routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../routing_math.h"
#include "../thread_pool.h"

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

// Number of sorted experts the policy keeps, clamps included.
int keptCount(const RoutingPolicy& policy, const float* probs, const int* order, int experts) {
  int kept = experts;
  switch (policy.kind) {
    case PolicyKind::TopK:
      return policy.k;
    case PolicyKind::TopP:
      if (policy.p < 1.0f) {  // p = 1 keeps all, even where rounding takes the running sum past 1 early
        // In double, in sorted order: exact enough that only a true tie with p sits on the boundary. Other
        // backends (CUDA) must sum in this order and precision to cut at the same expert.
        double cumulative = 0.0;
        for (int j = 0; j < experts; ++j) {
          cumulative += probs[order[j]];
          if (cumulative > static_cast<double>(policy.p)) {
            kept = j + 1;
            break;
          }
        }
      }
      break;
    case PolicyKind::Threshold:
      kept = 0;
      while (kept < experts && probs[order[kept]] >= policy.tau) ++kept;
      break;
  }
  kept = std::max(kept, policy.minExperts);
  return std::min(kept, policy.maxKept(experts));
}

void routeRow(const float* scores, int experts, RouterInput input, const RoutingPolicy& policy, int kMax,
              float* probs, int* order, int32_t* ids, float* weights, int32_t* count) {
  if (input == RouterInput::Logits) {
    softmaxRow(scores, experts, probs);
  } else {
    std::copy(scores, scores + experts, probs);
  }
  std::iota(order, order + experts, 0);
  // The one tie rule: probability descending, then lower expert id first.
  const auto before = [probs](int a, int b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); };
  if (policy.kind == PolicyKind::TopK) {
    std::partial_sort(order, order + policy.k, order + experts, before);
  } else {
    std::sort(order, order + experts, before);
  }
  const int kept = keptCount(policy, probs, order, experts);
  double keptSum = 0.0;
  for (int j = 0; j < kept; ++j) keptSum += probs[order[j]];
  // Kept probabilities that are all 0 (possible only with input 'probabilities') stay 0 instead of 0/0 = NaN.
  double factor = policy.normalize && keptSum > 0.0 ? 1.0 / keptSum : 1.0;
  if (policy.kind == PolicyKind::TopK) factor *= policy.scale;
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
