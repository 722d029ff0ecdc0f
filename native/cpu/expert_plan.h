// Groups the routed (token, expert) pairs by expert: each expert's rows are contiguous, in token order.
#pragma once

#include <cstdint>

#include "../core/aligned_buffer.h"
#include "../core/moe_stages.h"
#include "../core/routing_output.h"

namespace dynamoe::cpu {

struct ExpertPlan {
  ExpertPlanLayout arrays;  // the core's plan layout, in `storage`
  int routedRows = 0;       // rows [0, routedRows) are routed pairs; shared-expert rows follow
  int rows = 0;             // routed and shared rows
  AlignedBuffer storage;
};

// Counting sort of the routing result by expert (ids from `experts` on are zero-computation experts: they get no row
// and their slotRow stays -1); `extraRowsPerToken` reserves rows (one per token each) after the
// routed ones, for always-on shared experts (rowWeight 1 unless the caller sets it).
ExpertPlan planExpertRows(const RoutingOutput& routing, int tokens, int experts, int extraRowsPerToken);

}  // namespace dynamoe::cpu
