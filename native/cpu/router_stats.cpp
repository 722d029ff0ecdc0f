// Router statistics and the double-precision softmax they (and the router losses) are built on.
#include "router_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dynamoe::cpu {

void softmaxInDouble(const float* logits, int experts, double* probs) {
  const double maxLogit = *std::max_element(logits, logits + experts);
  double sum = 0.0;
  for (int e = 0; e < experts; ++e) sum += probs[e] = std::exp(static_cast<double>(logits[e]) - maxLogit);
  for (int e = 0; e < experts; ++e) probs[e] /= sum;
}

double entropyOf(const double* probs, int experts) {
  double entropy = 0.0;
  for (int e = 0; e < experts; ++e) {
    if (probs[e] > 0.0) entropy -= probs[e] * std::log(probs[e]);  // exp may underflow to 0: 0 log 0 = 0
  }
  return entropy;
}

void accumulateRouterStats(const float* logits, size_t stride, int tokens, int experts, double* probabilitySum,
                           double* entropySum) {
  std::vector<double> p(experts);
  for (int t = 0; t < tokens; ++t) {
    softmaxInDouble(logits + static_cast<size_t>(t) * stride, experts, p.data());
    for (int e = 0; e < experts; ++e) probabilitySum[e] += p[e];
    *entropySum += entropyOf(p.data(), experts);
  }
}

}  // namespace dynamoe::cpu
