// Router statistics the paper's analyses need (entropy, mean probabilities), from the router logits.
#pragma once

#include <cstddef>

namespace dynamoe::cpu {

// Adds, over `tokens` rows of `experts` logits (row stride `stride`), each expert's softmax probability to
// probabilitySum[e] and each token's entropy -sum P log P to *entropySum. Softmax in double, so sums of many
// tokens stay exact enough for the losses built from them.
void accumulateRouterStats(const float* logits, size_t stride, int tokens, int experts, double* probabilitySum,
                           double* entropySum);

}  // namespace dynamoe::cpu
