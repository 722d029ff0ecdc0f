#include "cpu_model.h"

#include <cstring>

#include "graph_ops.h"
#include "kv_cache.h"

namespace dynamoe::cpu {

CpuModel::CpuModel(const Backend& backend, GraphLayout layout, DType dtype, int kvPoolTokens)
    : backend_(backend),
      layout_(std::move(layout)),
      dtype_(dtype),
      // Values as wide as keys unless the layout says otherwise (0: a keys-only slot).
      kvPool_(std::make_shared<KvBlockPool>(
          layout_.kvWidths, layout_.kvValueWidths.empty() ? layout_.kvWidths : layout_.kvValueWidths,
          (kvPoolTokens + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens)) {}

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
  return std::make_shared<KvCache>(kvPool_, capacity);
}

namespace {

// A scratch set of the model's pool for one step, given back when the step ends.
class StepScratch {
 public:
  explicit StepScratch(ScratchPool& pool) : pool_(pool), set_(pool.take()) {}
  ~StepScratch() { pool_.give(std::move(set_)); }
  ScratchBuffers* get() { return set_.get(); }

 private:
  ScratchPool& pool_;
  std::unique_ptr<ScratchBuffers> set_;
};

}  // namespace

void CpuModel::forward(const StepRequest& request) const {
  if (request.count < 1) throw Error(code::kShape, "a step needs at least one segment");
  GraphStep step;
  for (int s = 0; s < request.count; ++s) {
    const StepSegment& segment = request.segments[s];
    auto* cache = dynamic_cast<KvCache*>(segment.sequence);
    if (cache == nullptr) throw Error(code::kInternal, "a CPU model was given another backend's sequence");
    if (&cache->pool() != kvPool_.get()) throw Error(code::kValue, "a step was given another model's sequence");
    for (const SegmentRows& other : step.segments) {
      if (other.cache == cache) throw Error(code::kValue, "a step holds the same sequence twice");
    }
    if (segment.tokens < 1) throw Error(code::kShape, "every segment of a step needs at least one token");
    step.segments.push_back({&segment, cache, step.tokens, segment.tokens, cache->length()});
    step.tokens += segment.tokens;
  }
  for (const SegmentRows& rows : step.segments) rows.cache->reserve(rows.rows);
  step.tokenIds.reserve(step.tokens);
  step.rowPositions.reserve(step.tokens);
  step.rowSegments.reserve(step.tokens);
  for (size_t s = 0; s < step.segments.size(); ++s) {
    const SegmentRows& rows = step.segments[s];
    step.tokenIds.insert(step.tokenIds.end(), rows.request->tokenIds, rows.request->tokenIds + rows.rows);
    for (int r = 0; r < rows.rows; ++r) {
      step.rowPositions.push_back(rows.position + r);
      step.rowSegments.push_back(static_cast<int32_t>(s));
    }
  }
  StepScratch scratch(*scratchPool_);
  step.scratch = scratch.get();
  // Rows padded to whole 32-column panels: GEMM outputs write complete panels.
  size_t total = 0;
  for (int width : layout_.bufferWidths) {
    const size_t stride = (static_cast<size_t>(width) + kPanelWidth - 1) / kPanelWidth * kPanelWidth;
    step.strides.push_back(stride);
    total += stride * step.tokens;
  }
  float* next = static_cast<float*>(step.scratch->get(ScratchSlot::Activations, total * sizeof(float)));
  std::memset(next, 0, total * sizeof(float));  // the panel padding of every row reads as zeros
  for (size_t stride : step.strides) {
    step.buffers.push_back(next);
    next += stride * step.tokens;
  }
  // Ops were all added before the first forward (the addon seals the model), so no lock is needed here.
  for (const auto& op : ops_) op->run(step);
  for (const SegmentRows& rows : step.segments) rows.cache->commit(rows.rows);
}

}  // namespace dynamoe::cpu
