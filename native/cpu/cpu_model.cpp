#include "cpu_model.h"

#include <cstring>
#include <type_traits>

#include "graph_ops.h"
#include "kv_cache.h"

namespace dynamoe::cpu {

CpuModel::CpuModel(const Backend& backend, GraphLayout layout, DType dtype)
    : backend_(backend), layout_(std::move(layout)), dtype_(dtype) {}

std::unique_ptr<GraphOp> CpuModel::makeOp(const GraphNode& node) {
  const int vocab = layout_.vocab;
  const DType dtype = dtype_;
  return std::visit(
      [&](const auto& n) -> std::unique_ptr<GraphOp> {
        using Node = std::decay_t<decltype(n)>;
        if constexpr (std::is_same_v<Node, EmbeddingNode>) {
          embeddingTable_ = std::make_shared<const PackedMatrix>(packColumns(n.weight, vocab, n.hidden, dtype));
          return makeEmbeddingOp(embeddingTable_, vocab, n.hidden, n.output);
        } else if constexpr (std::is_same_v<Node, LogitsNode>) {
          if (n.tied) {
            if (!embeddingTable_) throw Error(code::kShape, "a tied LM head needs the embedding node first");
            return makeLogitsOp(n.input, embeddingTable_, vocab, false);
          }
          auto packed = std::make_shared<const PackedMatrix>(packColumns(n.weight, vocab, n.hidden, dtype));
          return makeLogitsOp(n.input, std::move(packed), vocab, true);
        } else if constexpr (std::is_same_v<Node, LinearNode>) {
          auto packed = std::make_shared<const PackedMatrix>(packColumns(n.weight, n.outFeatures, n.inFeatures, dtype));
          return makeLinearOp(n.input, n.output, std::move(packed), n.outFeatures, n.bias);
        } else if constexpr (std::is_same_v<Node, RmsNormNode>) {
          return makeRmsNormOp(n.input, n.output, n.width, n.groupSize, n.weight, n.epsilon);
        } else if constexpr (std::is_same_v<Node, RopeNode>) {
          return makeRopeOp(n.buffer, n.heads, n.headDim, n.theta, n.style);
        } else if constexpr (std::is_same_v<Node, AttentionNode>) {
          return makeAttentionOp(n);
        } else if constexpr (std::is_same_v<Node, AddNode>) {
          return makeAddOp(n.a, n.b, n.output, n.width);
        } else if constexpr (std::is_same_v<Node, MlpNode>) {
          return makeDenseMlpOp(n.input, n.output, packGateUp(n.gate, n.up, n.ffn, n.hidden, dtype),
                                packColumns(n.down, n.hidden, n.ffn, dtype));
        } else {
          static_assert(std::is_same_v<Node, MoeNode>, "every op kind has a CPU op");
          return makeMoeOp(n.input, n.output, n.slot, backend_.createMoeLayer(n.weights));
        }
      },
      node);
}

void CpuModel::addNode(const GraphNode& node) {
  std::unique_ptr<GraphOp> op = makeOp(node);
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
