// One native op of a model graph, and the state of one forward step the ops run on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/model_step.h"
#include "../core/routing_policy.h"
#include "kv_cache.h"

namespace dynamoe::cpu {

struct GraphStep {
  int tokens = 0;
  int position = 0;                  // absolute position of the step's first token
  const int32_t* tokenIds = nullptr;
  std::vector<float*> buffers;       // activation buffer b: [tokens][strides[b]]
  std::vector<size_t> strides;
  KvCache* cache = nullptr;
  const RoutingPolicy* policies = nullptr;  // one per MoE slot
  const MoeStepStats* moeStats = nullptr;   // one per MoE slot, or null
  float* logits = nullptr;                  // [logitRows][vocab]
  bool lastRowLogits = false;               // logits of the last position only (generation)
  const int32_t* targets = nullptr;         // [tokens] next-token ids to score instead of writing logits (-1: none)
  double* targetLogProbs = nullptr;         // [tokens] log P(targets[t]) (NaN where targets[t] < 0)
};

class GraphOp {
 public:
  virtual ~GraphOp() = default;
  virtual void run(GraphStep& step) const = 0;
  virtual size_t weightBytes() const { return 0; }
};

}  // namespace dynamoe::cpu
