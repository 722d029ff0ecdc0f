// Groups the routed (token, expert) pairs by expert: each expert's rows are contiguous, in token order.
#pragma once

#include <cstdint>
#include <vector>

#include "routing.h"

namespace dynamoe::cpu {

struct ExpertPlan {
  std::vector<int32_t> offsets;    // [experts + 1]: rows of expert e are [offsets[e], offsets[e+1])
  std::vector<int32_t> rowToken;   // token each row reads
  std::vector<float> rowWeight;    // routing weight applied to each row's expert output
  std::vector<int32_t> slotRow;    // [tokens][kMax]: row holding each used slot, -1 for unused slots
  int routedRows = 0;              // rows [0, routedRows) are routed pairs; shared-expert rows follow
};

// Counting sort of the routing result by expert; `extraRowsPerToken` reserves rows (one per token each) after the
// routed ones, for always-on shared experts.
ExpertPlan planExpertRows(const RoutingOutput& routing, int tokens, int experts, int extraRowsPerToken);

}  // namespace dynamoe::cpu
