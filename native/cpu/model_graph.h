// A whole model as a list of native ops over named activation buffers, run one forward step at a time.
#pragma once

#include <memory>
#include <vector>

#include "graph_op.h"

namespace dynamoe::cpu {

struct GraphLayout {
  std::vector<int> bufferWidths;  // floats per token of each activation buffer
  int vocab = 0;
  std::vector<int> kvWidths;      // per attention slot: kv heads x head dim
  std::vector<int> moeExperts;    // per MoE slot: routed experts
};

struct StepRequest {
  const int32_t* tokenIds = nullptr;
  int tokens = 0;
  KvCache* cache = nullptr;                 // appended to; positions continue from its length
  const RoutingPolicy* policies = nullptr;  // one per MoE slot
  const MoeStepStats* moeStats = nullptr;   // one per MoE slot, or null
  float* logits = nullptr;                  // [tokens or 1][vocab]
  bool lastRowLogits = false;
  const int32_t* targets = nullptr;         // scoring: [tokens] ids whose log-probabilities replace the logits
  double* targetLogProbs = nullptr;         // scoring: [tokens] out
};

class ModelGraph {
 public:
  explicit ModelGraph(GraphLayout layout) : layout_(std::move(layout)) {}

  const GraphLayout& layout() const { return layout_; }
  void append(std::unique_ptr<GraphOp> op) { ops_.push_back(std::move(op)); }
  size_t weightBytes() const;
  // Runs every op in order; the cache keeps the step's positions only when all of them succeed.
  void forward(const StepRequest& request) const;

 private:
  GraphLayout layout_;
  std::vector<std::unique_ptr<GraphOp>> ops_;
};

}  // namespace dynamoe::cpu
