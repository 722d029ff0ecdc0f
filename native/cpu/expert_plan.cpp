#include "expert_plan.h"

#include <algorithm>
#include <vector>

namespace dynamoe::cpu {

ExpertPlan planExpertRows(const RoutingOutput& routing, int tokens, int experts, int extraRowsPerToken) {
  int routedRows = 0;
  for (int e = 0; e < experts; ++e) routedRows += routing.expertLoad[e];
  const size_t rows = static_cast<size_t>(routedRows) + static_cast<size_t>(extraRowsPerToken) * tokens;
  const size_t slots = static_cast<size_t>(tokens) * routing.kMax;
  ExpertPlan plan;
  plan.routedRows = routedRows;
  plan.rows = static_cast<int>(rows);
  // One allocation, four 4-byte arrays: offsets, rowToken, rowWeight, slotRow.
  plan.storage = AlignedBuffer((static_cast<size_t>(experts) + 1 + 2 * rows + slots) * 4,
                               AlignedBuffer::Fill::Uninitialized);
  ExpertPlanLayout& a = plan.arrays;
  a.expertOffsets = plan.storage.as<int32_t>();
  a.rowToken = a.expertOffsets + experts + 1;
  a.rowWeight = reinterpret_cast<float*>(a.rowToken + rows);
  a.slotRow = reinterpret_cast<int32_t*>(a.rowWeight + rows);
  a.expertOffsets[0] = 0;
  for (int e = 0; e < experts; ++e) a.expertOffsets[e + 1] = a.expertOffsets[e] + routing.expertLoad[e];
  std::fill(a.rowWeight, a.rowWeight + rows, 1.0f);
  std::fill(a.slotRow, a.slotRow + slots, -1);

  std::vector<int32_t> cursor(a.expertOffsets, a.expertOffsets + experts);
  for (int t = 0; t < tokens; ++t) {  // visiting tokens in order keeps each expert's rows in token order
    for (int s = 0; s < routing.counts[t]; ++s) {
      const size_t slot = static_cast<size_t>(t) * routing.kMax + s;
      if (routing.ids[slot] >= experts) continue;  // a zero-computation expert: no GEMM row
      const int32_t row = cursor[routing.ids[slot]]++;
      a.rowToken[row] = t;
      a.rowWeight[row] = routing.weights[slot];
      a.slotRow[slot] = row;
    }
  }
  for (size_t extra = 0; extra < static_cast<size_t>(extraRowsPerToken); ++extra) {
    for (int t = 0; t < tokens; ++t) a.rowToken[routedRows + extra * tokens + t] = t;
  }
  return plan;
}

}  // namespace dynamoe::cpu
