// Which cached positions a query sees and how its scores are scaled by position (AttentionNode's window, chunk and
// temperature), for every CUDA attention kernel; the CPU's are firstVisiblePosition and attentionTemperature
// (native/core/graph.h).
#pragma once

namespace dynamoe::cuda::attention_detail {

// A query at `position` sees keys first .. visible - 1: causal, the last `window` of them when window > 0, those of
// its own chunk when chunk > 0.
__device__ __forceinline__ void visibleRange(int position, int window, int chunk, int& first, int& visible) {
  visible = position + 1;
  first = chunk > 0 ? position / chunk * chunk : window > 0 ? max(0, visible - window) : 0;
}

// AttentionNode's temperature at `position` (the CPU's attentionTemperature): 1 without one.
__device__ __forceinline__ float attentionTemperatureAt(int position, int floor, float scale) {
  if (floor <= 0) return 1.0f;
  return 1.0f + scale * static_cast<float>(log1p(static_cast<double>((position + 1) / floor)));
}

}  // namespace dynamoe::cuda::attention_detail
