#include "combine.h"

#include <algorithm>

#include "thread_pool.h"

namespace dynamoe::cpu {

namespace {
constexpr int kTokensPerItem = 16;

inline void addRow(float* out, const float* row, int hidden) {
  for (int h = 0; h < hidden; ++h) out[h] += row[h];
}
inline void addScaledRow(float* out, const float* row, float weight, int hidden) {
  for (int h = 0; h < hidden; ++h) out[h] += weight * row[h];
}

}  // namespace

void combineExpertRows(const ExpertPlan& plan, const RoutingOutput& routing, int tokens, int hidden,
                       int sharedRowsPerToken, const float* rowOutput, size_t rowStride, const ZeroExpertRows& zero,
                       float* out, size_t outStride) {
  const size_t items = (static_cast<size_t>(tokens) + kTokensPerItem - 1) / kTokensPerItem;
  cpuThreadPool().parallelFor(items, [&](size_t item) {
    const int first = static_cast<int>(item) * kTokensPerItem;
    const int last = std::min(tokens, first + kTokensPerItem);
    for (int t = first; t < last; ++t) {
      float* tokenOut = out + static_cast<size_t>(t) * outStride;
      std::fill(tokenOut, tokenOut + hidden, 0.0f);
      for (int s = 0; s < routing.counts[t]; ++s) {
        const size_t slot = static_cast<size_t>(t) * routing.kMax + s;
        if (routing.ids[slot] >= zero.experts) {
          if (zero.identity) addScaledRow(tokenOut, zero.x + static_cast<size_t>(t) * zero.xStride, routing.weights[slot], hidden);
          continue;
        }
        const size_t row = static_cast<size_t>(plan.arrays.slotRow[slot]);
        addRow(tokenOut, rowOutput + row * rowStride, hidden);
      }
      for (int extra = 0; extra < sharedRowsPerToken; ++extra) {
        const size_t row = static_cast<size_t>(plan.routedRows) + static_cast<size_t>(extra) * tokens + t;
        addRow(tokenOut, rowOutput + row * rowStride, hidden);
      }
    }
  });
}

}  // namespace dynamoe::cpu
