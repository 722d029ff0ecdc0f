#include "router_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dynamoe::cpu {

void accumulateRouterStats(const float* logits, size_t stride, int tokens, int experts, double* probabilitySum,
                           double* entropySum) {
  std::vector<double> p(experts);
  for (int t = 0; t < tokens; ++t) {
    const float* row = logits + static_cast<size_t>(t) * stride;
    const double maxLogit = *std::max_element(row, row + experts);
    double sum = 0.0;
    for (int e = 0; e < experts; ++e) sum += p[e] = std::exp(static_cast<double>(row[e]) - maxLogit);
    double entropy = 0.0;
    for (int e = 0; e < experts; ++e) {
      p[e] /= sum;
      probabilitySum[e] += p[e];
      if (p[e] > 0.0) entropy -= p[e] * std::log(p[e]);
    }
    *entropySum += entropy;
  }
}

}  // namespace dynamoe::cpu
