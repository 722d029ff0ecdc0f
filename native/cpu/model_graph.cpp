#include "model_graph.h"

#include <cstring>

#include "packed_matrix.h"

namespace dynamoe::cpu {

size_t ModelGraph::weightBytes() const {
  size_t bytes = 0;
  for (const auto& op : ops_) bytes += op->weightBytes();
  return bytes;
}

void ModelGraph::forward(const StepRequest& request) const {
  request.cache->reserve(request.tokens);
  GraphStep step;
  step.tokens = request.tokens;
  step.position = request.cache->length();
  step.tokenIds = request.tokenIds;
  step.cache = request.cache;
  step.policies = request.policies;
  step.moeStats = request.moeStats;
  step.logits = request.logits;
  step.lastRowLogits = request.lastRowLogits;
  step.targets = request.targets;
  step.targetLogProbs = request.targetLogProbs;
  // Rows padded to whole 32-column panels: GEMM outputs write complete panels.
  size_t total = 0;
  for (int width : layout_.bufferWidths) {
    const size_t stride = (static_cast<size_t>(width) + kPanelWidth - 1) / kPanelWidth * kPanelWidth;
    step.strides.push_back(stride);
    total += stride * request.tokens;
  }
  float* next = static_cast<float*>(request.cache->stepScratch().get(ScratchSlot::Activations, total * sizeof(float)));
  std::memset(next, 0, total * sizeof(float));  // the panel padding of every row reads as zeros
  for (size_t stride : step.strides) {
    step.buffers.push_back(next);
    next += stride * request.tokens;
  }
  for (const auto& op : ops_) op->run(step);
  request.cache->commit(request.tokens);
}

}  // namespace dynamoe::cpu
