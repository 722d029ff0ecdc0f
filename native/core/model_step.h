// One forward step of a model: the sequence it extends, its tokens, the routing policy of each MoE layer, and what
// it writes back.
#pragma once

#include <cstddef>
#include <cstdint>

#include "moe_config.h"
#include "routing_policy.h"

namespace dynamoe {

// One sequence on a backend: its KV cache and the scratch its steps reuse. One step at a time runs on it.
class Sequence {
 public:
  virtual ~Sequence() = default;
  virtual int capacity() const = 0;  // tokens the cache holds
  virtual int length() const = 0;    // tokens committed so far
  virtual void reset() = 0;
  virtual size_t bytes() const = 0;  // of its KV cache
};

// Statistics one MoE layer writes for one step (all optional).
struct MoeStepStats {
  int32_t* counts = nullptr;      // [tokens]: experts each token used
  int32_t* expertLoad = nullptr;  // [experts]: tokens routed to each expert
  RouterStatsSums sums;
};

struct StepRequest {
  const int32_t* tokenIds = nullptr;
  int tokens = 0;
  Sequence* sequence = nullptr;             // appended to; positions continue from its length
  const RoutingPolicy* policies = nullptr;  // one per MoE slot
  const MoeStepStats* moeStats = nullptr;   // one per MoE slot, or null
  float* logits = nullptr;                  // [tokens or 1][vocab]
  bool lastRowLogits = false;
  const int32_t* targets = nullptr;         // scoring: [tokens] ids whose log-probabilities replace the logits
  double* targetLogProbs = nullptr;         // scoring: [tokens] out
};

}  // namespace dynamoe
