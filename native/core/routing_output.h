// What routing writes: a fixed-shape result (ROUTING.md) every backend fills the same way, and what it routes from.
#pragma once

#include <cstdint>

namespace dynamoe {

// Caller-owned fixed-shape outputs: ids/weights are [tokens][kMax] (unused slots: -1 / 0).
struct RoutingOutput {
  int kMax = 0;
  int32_t* ids = nullptr;
  float* weights = nullptr;
  int32_t* counts = nullptr;      // [tokens]
  int32_t* expertLoad = nullptr;  // [experts]
};

// What a router's scores are: logits (softmax first, in fp32 as routing_math.h computes it) or probabilities.
enum class RouterInput { Logits, Probabilities };

}  // namespace dynamoe
