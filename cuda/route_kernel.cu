// Fused routing on the GPU: one warp per token computes the fp32 softmax (routing_math.h: the CPU router's exact
// arithmetic), selects experts by argmax rounds in the ROUTING.md order (probability descending, lower id first),
// applies the policy's cut, clamps, normalisation and scale, and counts tokens per expert. Identical probabilities
// and identical comparisons make the CUDA selection the CPU selection, bit for bit.
#include <algorithm>
#include <climits>

#include "../native/core/router_select.h"
#include "../native/core/routing_math.h"
#include "../native/core/routing_rules.h"
#include "cuda_check.h"
#include "moe_kernels.h"

namespace dynamoe::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kMaxWarpsPerBlock = 8;
constexpr size_t kSharedBytes = 48 * 1024;
constexpr unsigned kFullMask = 0xffffffffu;

// The best (probability, id) among this lane's experts e = lane, lane + 32, ...; taken experts hold -1.
__device__ inline void laneBest(const float* probs, int experts, int lane, float* bestP, int* bestId) {
  *bestP = -1.0f;
  *bestId = INT_MAX;
  for (int e = lane; e < experts; e += kWarp) {
    if (probs[e] > *bestP) {  // strict: among equal values the first (lowest id) stays
      *bestP = probs[e];
      *bestId = e;
    }
  }
}

// Writes this token's probabilities to `probs` (each lane its own experts) exactly as cpu::softmaxRow does.
// Returns false (in every lane) when a logit is NaN or infinite.
__device__ bool tokenProbabilities(const float* scores, int experts, bool logits, int lane, float* probs) {
  if (!logits) {
    for (int e = lane; e < experts; e += kWarp) probs[e] = scores[e];
    return true;
  }
  float maxScore = -INFINITY;
  bool finite = true;
  for (int e = lane; e < experts; e += kWarp) {
    maxScore = fmaxf(maxScore, scores[e]);
    finite = finite && isfinite(scores[e]);
  }
  if (!__all_sync(kFullMask, finite)) return false;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    maxScore = fmaxf(maxScore, __shfl_xor_sync(kFullMask, maxScore, offset));
  }
  double laneSum = 0.0;
  for (int e = lane; e < experts; e += kWarp) {
    probs[e] = routing_math::routingExp(__fsub_rn(scores[e], maxScore));
    laneSum += probs[e];
  }
  // The xor butterfly adds in routing_math::reduceLanes' order and leaves the same sum in every lane.
  for (int offset = kWarp / 2; offset > 0; offset /= 2) laneSum += __shfl_xor_sync(kFullMask, laneSum, offset);
  for (int e = lane; e < experts; e += kWarp) probs[e] = static_cast<float>(static_cast<double>(probs[e]) / laneSum);
  return true;
}

// The token's policy: its segment's in a step of many sequences, else the launch's.
__device__ inline RoutingPolicy policyOf(const RouteLaunch& launch, int token) {
  return launch.segmentPolicies != nullptr ? launch.segmentPolicies[launch.tokenSegments[token]] : launch.policy;
}

__global__ void routeKernel(RouteLaunch launch) {
  extern __shared__ float sharedProbs[];  // [warps][experts]
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int token = blockIdx.x * (blockDim.x / kWarp) + warp;
  if (token >= launch.tokens) return;  // whole warps leave together
  const int experts = launch.experts;
  const RoutingPolicy policy = policyOf(launch, token);
  float* probs = sharedProbs + static_cast<size_t>(warp) * experts;
  if (!tokenProbabilities(launch.scores + static_cast<size_t>(token) * launch.scoreStride, experts, launch.logits,
                          lane, probs)) {
    if (lane == 0) atomicMin(launch.firstInvalidToken, token);  // reported by the host after the forward
    for (int e = lane; e < experts; e += kWarp) probs[e] = 0.0f;  // route something well-defined meanwhile
  }

  int32_t* ids = launch.ids + static_cast<size_t>(token) * launch.kMax;
  float* weights = launch.weights + static_cast<size_t>(token) * launch.kMax;
  float bestP;
  int bestId;
  laneBest(probs, experts, lane, &bestP, &bestId);
  routing_rules::Selection selection;  // the CPU router's rules, in the same rank order and precision
  int32_t* chunkCounts = launch.chunkCounts + static_cast<size_t>(token / kTokensPerChunk) * experts;
  const int limit = routing_rules::keptLimit(policy, experts);
  while (selection.kept < limit) {
    float p = bestP;
    int id = bestId;
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      const float otherP = __shfl_xor_sync(kFullMask, p, offset);
      const int otherId = __shfl_xor_sync(kFullMask, id, offset);
      if (routing_rules::ranksBefore(otherP, otherId, p, id)) {
        p = otherP;
        id = otherId;
      }
    }
    if (routing_rules::stopsBefore(policy, experts, selection, p)) break;
    const int kept = selection.kept;
    if (lane == kept % kWarp) {
      ids[kept] = id;
      weights[kept] = p;  // the raw probability; scaled below
    }
    if (lane == 0) {
      atomicAdd(&launch.expertLoad[id], 1);
      atomicAdd(&chunkCounts[id], 1);
    }
    routing_rules::keep(policy, selection, p);
    if (lane == id % kWarp) {  // the owner marks it taken and finds its next best
      probs[id] = -1.0f;
      laneBest(probs, experts, lane, &bestP, &bestId);
    }
  }
  __syncwarp();  // the raw weights written by other lanes are visible below

  const int kept = selection.kept;
  const double factor = routing_rules::weightFactor(policy, selection.keptSum);
  for (int slot = lane; slot < launch.kMax; slot += kWarp) {
    if (slot < kept) {
      weights[slot] = static_cast<float>(static_cast<double>(weights[slot]) * factor);
    } else {
      ids[slot] = -1;
      weights[slot] = 0.0f;
    }
  }
  if (lane == 0) launch.counts[token] = kept;
}

// A family's router rule: each thread routes one token through the core's serial selection, the code the CPU runs.
__global__ void routeByRuleKernel(RouteLaunch launch) {
  const int token = blockIdx.x * blockDim.x + threadIdx.x;
  if (token >= launch.tokens) return;
  const int experts = launch.experts;
  const float* logits = launch.scores + static_cast<size_t>(token) * launch.scoreStride;
  for (int e = 0; e < experts; ++e) {
    if (!isfinite(logits[e])) {
      atomicMin(launch.firstInvalidToken, token);  // reported by the host; the binding checks before routing
      return;
    }
  }
  float* scratch = static_cast<float*>(launch.ruleScratch) + static_cast<size_t>(token) * 4 * experts;
  const router_select::Scratch s{scratch, scratch + experts, scratch + 2 * experts,
                                 reinterpret_cast<int32_t*>(scratch + 3 * experts)};
  int32_t* ids = launch.ids + static_cast<size_t>(token) * launch.kMax;
  float* weights = launch.weights + static_cast<size_t>(token) * launch.kMax;
  const int kept =
      router_select::routeToken(logits, experts, launch.rule, policyOf(launch, token), launch.kMax, s, ids, weights);
  launch.counts[token] = kept;
  int32_t* chunkCounts = launch.chunkCounts + static_cast<size_t>(token / kTokensPerChunk) * experts;
  for (int j = 0; j < kept; ++j) {
    atomicAdd(&launch.expertLoad[ids[j]], 1);
    atomicAdd(&chunkCounts[ids[j]], 1);
  }
}

}  // namespace

void launchRoute(const RouteLaunch& launch, cudaStream_t stream) {
  if (launch.tokens == 0) return;
  if (!launch.rule.plain()) {
    constexpr int kThreads = 128;
    routeByRuleKernel<<<(launch.tokens + kThreads - 1) / kThreads, kThreads, 0, stream>>>(launch);
    checkCuda(cudaGetLastError(), "the routing kernel launch");
    return;
  }
  const size_t bytesPerWarp = static_cast<size_t>(launch.experts) * sizeof(float);
  const int warps = static_cast<int>(std::min<size_t>(kMaxWarpsPerBlock, kSharedBytes / bytesPerWarp));
  const int blocks = (launch.tokens + warps - 1) / warps;
  routeKernel<<<blocks, warps * kWarp, warps * bytesPerWarp, stream>>>(launch);
  checkCuda(cudaGetLastError(), "the routing kernel launch");
}

}  // namespace dynamoe::cuda
