// Router statistics and the double-precision softmax they (and the router losses) are built on.
#include "router_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dynamoe {

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

namespace {

void sigmoidSharesInDouble(const float* logits, int experts, double* shares) {
  double sum = 0.0;
  for (int e = 0; e < experts; ++e) sum += shares[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[e])));
  // Every sigmoid underflows to 0 only for logits below -745: call that row uniform rather than 0/0.
  for (int e = 0; e < experts; ++e) shares[e] = sum > 0.0 ? shares[e] / sum : 1.0 / experts;
}

}  // namespace

void accumulateRouterStats(const float* logits, size_t stride, int tokens, int experts, RouterScoring scoring,
                           double* probabilitySum, double* entropySum) {
  std::vector<double> p(experts);
  for (int t = 0; t < tokens; ++t) {
    const float* row = logits + static_cast<size_t>(t) * stride;
    if (scoring == RouterScoring::Sigmoid) {
      sigmoidSharesInDouble(row, experts, p.data());
    } else {
      softmaxInDouble(row, experts, p.data());
    }
    for (int e = 0; e < experts; ++e) probabilitySum[e] += p[e];
    *entropySum += entropyOf(p.data(), experts);
  }
}

}  // namespace dynamoe
