#include "cpu_model.h"

#include <cstring>

#include "graph_ops.h"
#include "kv_cache.h"

namespace dynamoe::cpu {

CpuModel::CpuModel(const Backend& backend, GraphLayout layout, DType dtype)
    : backend_(backend), layout_(std::move(layout)), dtype_(dtype) {}

void CpuModel::addNode(const GraphNode& node) {
  OpContext context{layout_, dtype_, backend_, embeddingTable_};
  // Each op kind's factory is found by overload: a new op needs no case here.
  std::unique_ptr<GraphOp> op = std::visit([&](const auto& n) { return makeOp(n, context); }, node);
  std::lock_guard<std::mutex> lock(opsMutex_);
  ops_.push_back(std::move(op));
}

size_t CpuModel::weightBytes() const {
  std::lock_guard<std::mutex> lock(opsMutex_);
  size_t bytes = 0;
  for (const auto& op : ops_) bytes += op->weightBytes();
  return bytes;
}

std::shared_ptr<Sequence> CpuModel::createSequence(int capacity) {
  return std::make_shared<KvCache>(layout_.kvWidths, capacity, scratchPool_);
}

void CpuModel::forward(const StepRequest& request) const {
  auto* cache = dynamic_cast<KvCache*>(request.sequence);
  if (cache == nullptr) throw Error(code::kInternal, "a CPU model was given another backend's sequence");
  cache->reserve(request.tokens);
  GraphStep step;
  step.tokens = request.tokens;
  step.position = cache->length();
  step.tokenIds = request.tokenIds;
  step.cache = cache;
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
  float* next = static_cast<float*>(cache->stepScratch().get(ScratchSlot::Activations, total * sizeof(float)));
  std::memset(next, 0, total * sizeof(float));  // the panel padding of every row reads as zeros
  for (size_t stride : step.strides) {
    step.buffers.push_back(next);
    next += stride * request.tokens;
  }
  // Ops were all added before the first forward (the addon seals the model), so no lock is needed here.
  for (const auto& op : ops_) op->run(step);
  cache->commit(request.tokens);
}

}  // namespace dynamoe::cpu
