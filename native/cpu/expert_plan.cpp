#include "expert_plan.h"

namespace dynamoe::cpu {

ExpertPlan planExpertRows(const RoutingOutput& routing, int tokens, int experts, int extraRowsPerToken) {
  ExpertPlan plan;
  plan.offsets.assign(static_cast<size_t>(experts) + 1, 0);
  for (int e = 0; e < experts; ++e) plan.offsets[e + 1] = plan.offsets[e] + routing.expertLoad[e];
  plan.routedRows = plan.offsets[experts];
  const size_t rows = static_cast<size_t>(plan.routedRows) + static_cast<size_t>(extraRowsPerToken) * tokens;
  plan.rowToken.resize(rows);
  plan.rowWeight.resize(rows, 1.0f);
  plan.slotRow.assign(static_cast<size_t>(tokens) * routing.kMax, -1);

  std::vector<int32_t> cursor(plan.offsets.begin(), plan.offsets.end() - 1);
  for (int t = 0; t < tokens; ++t) {  // visiting tokens in order keeps each expert's rows in token order
    for (int s = 0; s < routing.counts[t]; ++s) {
      const size_t slot = static_cast<size_t>(t) * routing.kMax + s;
      const int32_t row = cursor[routing.ids[slot]]++;
      plan.rowToken[row] = t;
      plan.rowWeight[row] = routing.weights[slot];
      plan.slotRow[slot] = row;
    }
  }
  for (size_t extra = 0; extra < static_cast<size_t>(extraRowsPerToken); ++extra) {
    for (int t = 0; t < tokens; ++t) plan.rowToken[plan.routedRows + extra * tokens + t] = t;
  }
  return plan;
}

}  // namespace dynamoe::cpu
