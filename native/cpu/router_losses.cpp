// Router losses: fp32 selection through routeTokens, then entropy / load-balance losses and gradients in double.
#include "router_losses.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "thread_pool.h"
#include "../core/router_stats.h"
#include "routing.h"

namespace dynamoe::cpu {

namespace {

// Slots (ids + weights) routed per routeTokens call: 16 MiB of scratch however many tokens and experts there are.
constexpr size_t kSlotsPerRoutingBlock = size_t{1} << 21;
// Tokens per parallel item of the loss pass. Fixed (not derived from the thread count) so that the partial sums,
// added in item order, give the same bits on any machine.
constexpr int kTokensPerItem = 64;

// Fills counts[t] = |S_t| and returns, per expert, how many tokens selected it; routes in blocks of tokens.
std::vector<int64_t> selectExperts(const float* logits, int tokens, int experts, const RoutingPolicy& policy,
                                   int32_t* counts) {
  const int kMax = policy.kMax(experts);
  const int blockTokens = static_cast<int>(
      std::clamp<size_t>(kSlotsPerRoutingBlock / static_cast<size_t>(kMax), 1, static_cast<size_t>(tokens)));
  std::vector<int32_t> ids(static_cast<size_t>(blockTokens) * kMax);
  std::vector<float> weights(ids.size());
  std::vector<int32_t> blockLoad(experts);
  std::vector<int64_t> load(experts, 0);
  for (int first = 0; first < tokens; first += blockTokens) {
    const int rows = std::min(blockTokens, tokens - first);
    const RoutingOutput output{kMax, ids.data(), weights.data(), counts + first, blockLoad.data()};
    routeTokens(logits + static_cast<size_t>(first) * experts, experts, rows, experts, RouterInput::Logits, policy,
                RouterRule{}, output);
    for (int e = 0; e < experts; ++e) load[e] += blockLoad[e];
  }
  return load;
}

}  // namespace

RouterLossValues computeRouterLosses(const float* logits, int tokens, int experts, const RoutingPolicy& policy,
                                     const RouterLossOutput& out) {
  const double tokenCount = tokens;
  const std::vector<int64_t> load = selectExperts(logits, tokens, experts, policy, out.counts);
  for (int e = 0; e < experts; ++e) out.fraction[e] = static_cast<double>(load[e]) / tokenCount;

  const size_t items = (static_cast<size_t>(tokens) + kTokensPerItem - 1) / kTokensPerItem;
  std::vector<double> itemEntropy(items, 0.0);
  std::vector<double> itemProbabilitySum(items * experts, 0.0);
  const double* fraction = out.fraction;
  const double dynamicScale = -1.0 / tokenCount;
  const double balanceScale = experts / tokenCount;
  cpuThreadPool().parallelFor(items, [&](size_t item) {
    std::vector<double> p(experts);
    double* probabilitySum = itemProbabilitySum.data() + item * experts;
    const int first = static_cast<int>(item) * kTokensPerItem;
    const int last = std::min(tokens, first + kTokensPerItem);
    for (int t = first; t < last; ++t) {
      const size_t row = static_cast<size_t>(t) * experts;
      softmaxInDouble(logits + row, experts, p.data());
      const double entropy = entropyOf(p.data(), experts);
      itemEntropy[item] += entropy;
      for (int e = 0; e < experts; ++e) probabilitySum[e] += p[e];
      if (out.dynamicLossGradient != nullptr) {
        for (int e = 0; e < experts; ++e) {
          // P log P -> 0 as P -> 0, and so does P (log P + H): an underflowed P has gradient 0, not NaN.
          const double g = p[e] > 0.0 ? dynamicScale * p[e] * (std::log(p[e]) + entropy) : 0.0;
          out.dynamicLossGradient[row + e] = static_cast<float>(g);
        }
      }
      if (out.loadBalanceLossGradient != nullptr) {
        double expectedFraction = 0.0;  // sum_i f_i P_ti
        for (int e = 0; e < experts; ++e) expectedFraction += fraction[e] * p[e];
        for (int e = 0; e < experts; ++e) {
          out.loadBalanceLossGradient[row + e] =
              static_cast<float>(balanceScale * p[e] * (fraction[e] - expectedFraction));
        }
      }
    }
  });

  RouterLossValues values;
  double entropySum = 0.0;
  std::fill(out.meanProbability, out.meanProbability + experts, 0.0);
  for (size_t item = 0; item < items; ++item) {
    entropySum += itemEntropy[item];
    for (int e = 0; e < experts; ++e) out.meanProbability[e] += itemProbabilitySum[item * experts + e];
  }
  double balance = 0.0;
  for (int e = 0; e < experts; ++e) {
    out.meanProbability[e] /= tokenCount;
    balance += fraction[e] * out.meanProbability[e];
  }
  int64_t selected = 0;
  for (int t = 0; t < tokens; ++t) selected += out.counts[t];
  values.dynamicLoss = entropySum / tokenCount;
  values.loadBalanceLoss = experts * balance;
  values.expertsPerToken = static_cast<double>(selected) / tokenCount;
  return values;
}

}  // namespace dynamoe::cpu
