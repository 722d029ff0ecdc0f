// The log-probabilities a generation reports beside its chosen token (OpenAI's logprobs / top_logprobs): the
// log-softmax of a logits row over ids [0, limit), in double, at the chosen id and at the `top` most likely ids.
// The model's own distribution: temperature, top-k and top-p shape the choice, not these numbers.
#pragma once

#include <cstdint>

namespace dynamoe {

constexpr int kMaxTopLogprobs = 20;

struct TokenLogprobs {
  double chosen = 0.0;
  int count = 0;  // top entries filled: min(top, limit)
  int32_t topIds[kMaxTopLogprobs] = {};
  double topLogprobs[kMaxTopLogprobs] = {};
};

// NaN logits count as -inf, as the choice's keys do; ties rank the lower id first. A row whose logits are all -inf
// gives -inf everywhere. `chosen` in [0, limit), `top` in [0, kMaxTopLogprobs].
TokenLogprobs tokenLogprobs(const float* logits, int limit, int32_t chosen, int top);

}  // namespace dynamoe
