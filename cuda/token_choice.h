// Each logit row's next token on the GPU (native/core/token_choice.h, the same bits as the CPU): the greedy argmax,
// and seeded sampling, whose ranked candidates come from a segmented radix sort of the rows that need them.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../native/core/token_choice.h"
#include "device_step.h"

namespace dynamoe::cuda {

struct TokenChoiceRows {
  const float* logits = nullptr;         // [rows][stride] device
  size_t stride = 0;
  int rows = 0;
  const TokenChoice* choices = nullptr;  // [rows] device; limit 0: the row is not chosen from
  int32_t* tokens = nullptr;             // [rows] device: each chosen row's id
  // Whether any row samples with top-k or top-p (known on the host: it is part of a captured step's shape); without
  // one, no row is ranked and the sort is not enqueued.
  bool ranked = false;
};

// Enqueues the choices on `stream`, scratch from `arena`; no host synchronisation.
void enqueueTokenChoice(const TokenChoiceRows& rows, StepArena& arena, cudaStream_t stream);

}  // namespace dynamoe::cuda
