// Grouped GEMM driver: many (rows x weights) products in one parallel job, split over (group, row chunk, panel)
// so both cores stay busy whatever the split of rows between experts. Time follows the rows actually given.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "packed_matrix.h"
#include "thread_scratch.h"

namespace dynamoe::cpu {

struct GemmGroup {
  const PackedMatrix* weights = nullptr;
  int rows = 0;
  const float* input = nullptr;             // row i reads input + (inputRowIndex ? inputRowIndex[i] : i) * inputStride
  size_t inputStride = 0;
  const int32_t* inputRowIndex = nullptr;   // gathers rows while loading instead of copying them
  float* output = nullptr;                  // row i writes output + i * outputStride (padded to whole panels)
  size_t outputStride = 0;
  const float* rowScale = nullptr;          // Scaled only; null means 1
  std::atomic<int32_t>* rowsComputed = nullptr;  // optional count of rows this group multiplied
};

// `scratch`: where the staged rows (see grouped_gemm.cpp) go; null means the calling thread's buffers.
void runGroupedGemm(const std::vector<GemmGroup>& groups, Epilogue epilogue, ScratchBuffers* scratch = nullptr);

}  // namespace dynamoe::cpu
