// Argument checks at the native boundary (the TypeScript layer checks first; these keep native code safe anyway).
#pragma once

#include <napi.h>

#include <string>

#include "../core/dtype.h"
#include "../core/moe_config.h"
#include "../core/router_rule.h"
#include "../core/routing_policy.h"

namespace dynamoe {

// An integer in [min, max] read from options[key]; `fallback` when absent and fallback >= 0, else required.
int readInt(const Napi::Object& options, const char* key, int min, int max, int fallback = -1);
// A finite number read from options[key]; `fallback` when absent.
double readNumber(const Napi::Object& options, const char* key, double fallback);
bool readBool(const Napi::Object& options, const char* key, bool fallback);
Napi::Object requireObject(const Napi::Value& value, const std::string& what);

// A Float32Array of exactly `length` elements.
Napi::Float32Array requireFloat32Array(const Napi::Value& value, size_t length, const std::string& what);

// What a JS value is, for error messages ("a string", "undefined", "an Int32Array", ...).
std::string describe(const Napi::Value& value);

// A [rows][cols] weight matrix: a Float32Array (converted to `dtype` when packed), for f16/bf16 layers a
// Uint16Array of bit patterns, or { quant: 'q4_k' | ..., data: Uint8Array } of GGUF quantized rows.
MatrixSource requireWeights(const Napi::Value& value, size_t rows, size_t cols, DType dtype, const std::string& what);

// The quantized type named by `value` (a string such as 'q4_k'); ERR_DYNAMOE_DTYPE otherwise.
QuantType requireQuantType(const Napi::Value& value, const std::string& what);

// { kind: 'top-k' | 'top-p' | 'threshold', ... } checked against `experts`.
RoutingPolicy readPolicy(const Napi::Value& value, int experts);

// A family's router rule, { scoring?, groups?, keptGroups?, groupScore?, normalize?, scale?, selectionBias? }, for
// `slots` router outputs; undefined is the plain softmax router. selectionBias points into the JS Float32Array (the
// caller keeps it alive or copies it).
RouterRule readRouterRule(const Napi::Value& value, int slots, const std::string& what);

// Router scores of route() / routerLosses(): `sizes` gives { tokens, experts } (their product below 2^31) and
// `scores` must be a Float32Array of tokens * experts values.
struct RouterScores {
  Napi::Float32Array scores;
  int tokens = 0;
  int experts = 0;
};
RouterScores readRouterScores(const Napi::Value& scores, const Napi::Object& sizes);

}  // namespace dynamoe
