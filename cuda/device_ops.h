// What the CUDA backend object is made of: the GPU probe's check, the resident MoE layer and route() on the GPU.
#pragma once

#include <cstddef>
#include <memory>

#include "../native/core/backend.h"

namespace dynamoe::cuda {

// Throws Error(ERR_DYNAMOE_DEVICE) saying why when no usable GPU was found.
void requireDevice();

// Packs and uploads the weights to GPU memory (one expert at a time through a host staging buffer); the
// returned layer holds device memory only. Throws ERR_DYNAMOE_OUT_OF_MEMORY when the GPU cannot hold them.
std::shared_ptr<const MoeLayer> uploadMoeLayer(const MoeWeights& weights);

// quantMatmul() on the GPU: the weights uploaded as a model's quantized matrix, the input converted to bf16, and the
// dense GEMM a model step runs (the GEMV up to kGemvMaxRows rows, the tensor-core GEMM beyond).
void quantMatmulOnDevice(QuantType type, const uint8_t* weights, int n, int k, const float* input, int m, float* out);

// chooseTokens() on the GPU: the rows uploaded (padded like a step's logits) and chosen by the LM head's kernels.
void chooseTokensOnDevice(const float* logits, int rows, int vocab, const TokenChoice* choices, int32_t* tokens);

// route() on the GPU: the fused routing kernel on host scores (row stride `stride`, copied in and out).
// A family's router rule (rule.selectionBias in host memory) runs the core's per-token selection, one thread a token.
void routeOnDevice(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
                   const RoutingPolicy& policy, const RouterRule& rule, const RoutingOutput& out);

}  // namespace dynamoe::cuda
