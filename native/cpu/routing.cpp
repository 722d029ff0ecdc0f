#include "routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../core/routing_math.h"
#include "../core/router_select.h"
#include "../core/routing_rules.h"
#include "thread_pool.h"

namespace dynamoe::cpu {

namespace {

constexpr int kTokensPerItem = 64;

void routeRow(const float* scores, int experts, RouterInput input, const RoutingPolicy& policy, int kMax,
              float* probs, int* order, int32_t* ids, float* weights, int32_t* count) {
  if (input == RouterInput::Logits) {
    routing_math::softmaxRow(scores, experts, probs);
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
                 const RoutingPolicy& policy, const RouterRule& rule, const RoutingOutput& out) {
  const int kMax = out.kMax;
  const bool plain = rule.plain();
  const size_t items = (static_cast<size_t>(tokens) + kTokensPerItem - 1) / kTokensPerItem;
  cpuThreadPool().parallelFor(items, [&](size_t item) {
    std::vector<float> probs(experts);
    std::vector<int> order(experts);
    std::vector<float> keys(plain ? 0 : experts), shares(plain ? 0 : experts);
    std::vector<int32_t> states(plain ? 0 : experts);
    const router_select::Scratch scratch{probs.data(), keys.data(), shares.data(), states.data()};
    const int first = static_cast<int>(item) * kTokensPerItem;
    const int last = std::min(tokens, first + kTokensPerItem);
    for (int t = first; t < last; ++t) {
      const float* row = scores + static_cast<size_t>(t) * stride;
      int32_t* ids = out.ids + static_cast<size_t>(t) * kMax;
      float* weights = out.weights + static_cast<size_t>(t) * kMax;
      if (plain) {
        routeRow(row, experts, input, policy, kMax, probs.data(), order.data(), ids, weights, out.counts + t);
      } else {
        out.counts[t] = router_select::routeToken(row, experts, rule, policy, kMax, scratch, ids, weights);
      }
    }
  });
  std::fill(out.expertLoad, out.expertLoad + experts, 0);
  for (size_t slot = 0; slot < static_cast<size_t>(tokens) * kMax; ++slot) {
    if (out.ids[slot] >= 0) ++out.expertLoad[out.ids[slot]];
  }
}

}  // namespace dynamoe::cpu
