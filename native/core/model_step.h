// One forward step of a model: the sequence it extends, its tokens, the routing policy of each MoE layer, and what
// it writes back.
#pragma once

#include <cstddef>
#include <cstdint>

#include "moe_config.h"
#include "routing_policy.h"
#include "token_choice.h"

namespace dynamoe {

// One sequence on a backend: its KV cache, in blocks of its model's KV pool. One step at a time runs on it.
class Sequence {
 public:
  virtual ~Sequence() = default;
  virtual int capacity() const = 0;  // most tokens it may hold
  virtual int length() const = 0;    // tokens committed so far
  // Forgets its tokens and gives its KV blocks back to the pool.
  virtual void reset() = 0;
  virtual size_t bytes() const = 0;  // of the KV blocks it holds now
};

// Statistics one MoE layer writes for one segment of a step (all optional).
struct MoeStepStats {
  int32_t* counts = nullptr;      // [tokens]: experts each token used (routed slots, zero-computation ones included)
  int32_t* ffnCounts = nullptr;   // [tokens]: FFN experts each token used (slots of zero-computation experts left out)
  int32_t* expertLoad = nullptr;  // [experts]: tokens routed to each expert
  RouterStatsSums sums;
};

// One sequence's rows of a step: a chunk of its prompt, or its next token. Each segment has its own policies,
// statistics and outputs, so requests batched together stay apart.
struct StepSegment {
  Sequence* sequence = nullptr;             // appended to; positions continue from its length
  const int32_t* tokenIds = nullptr;
  int tokens = 0;
  const RoutingPolicy* policies = nullptr;  // one per MoE slot
  const MoeStepStats* moeStats = nullptr;   // one per MoE slot, or null
  float* logits = nullptr;                  // [tokens or 1][vocab]
  bool lastRowLogits = false;
  const int32_t* targets = nullptr;         // scoring: [tokens] ids whose log-probabilities replace the logits
  double* targetLogProbs = nullptr;         // scoring: [tokens] out
  // Generation (with lastRowLogits, without targets; choice.limit > 0): the last row's next id, greedy or sampled
  // (token_choice.h), is written to *chosenToken instead of its logits (`logits` is then unused), so a GPU step
  // copies one id back, not [vocab] floats. choice.limit 0: off.
  TokenChoice choice;
  int32_t* chosenToken = nullptr;
};

// One step: the rows of every segment, run through every op together (a row's results do not depend on the rows
// beside it). Each segment has a different sequence.
struct StepRequest {
  const StepSegment* segments = nullptr;
  int count = 0;
};

// The KV pool of a model: every sequence's keys and values, in blocks of `blockTokens` positions.
struct KvPoolState {
  int blockTokens = 0;
  int blocks = 0;      // in the pool
  int freeBlocks = 0;  // held by no sequence
  size_t blockBytes = 0;
};

}  // namespace dynamoe
