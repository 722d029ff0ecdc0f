// Router statistics the paper's analyses need (entropy, mean probabilities), from the router logits.
#pragma once

#include <cstddef>

#include "router_rule.h"

namespace dynamoe {

// Softmax of one row of fp32 logits, in double (max subtracted first). The losses and statistics use this rather
// than the fp32 routing softmax so sums over many tokens stay exact enough; expert selection stays fp32 (routing.h).
void softmaxInDouble(const float* logits, int experts, double* probs);

// Entropy -sum P log P of one row of probabilities, with 0 log 0 taken as 0.
double entropyOf(const double* probs, int experts);

// Adds, over `tokens` rows of `experts` logits (row stride `stride`), each expert's router probability to
// probabilitySum[e] and each token's entropy -sum P log P to *entropySum, in double. The router probability is the
// softmax (softmaxInDouble) or, for sigmoid routers, each expert's sigmoid over the row's sum of sigmoids.
void accumulateRouterStats(const float* logits, size_t stride, int tokens, int experts, RouterScoring scoring,
                           double* probabilitySum, double* entropySum);

}  // namespace dynamoe
