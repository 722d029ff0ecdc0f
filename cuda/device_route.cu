// route() on the GPU: host scores copied in, the fused routing kernel, the fixed-shape result copied back.
#include <climits>
#include <vector>

#include "device_ops.h"
#include "device_buffer.h"
#include "moe_kernels.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {

void routeOnDevice(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
                   const RoutingPolicy& policy, const RouterRule& rule, const RoutingOutput& out) {
  requireDevice();
  if (experts > kMaxDeviceExperts) {
    throw Error(code::kUnsupported, "the CUDA router handles up to " + std::to_string(kMaxDeviceExperts) +
                                        " experts, got " + std::to_string(experts) + "; use device 'cpu'");
  }
  NvtxRange range("moe/route", tokens);
  OwnedStream stream;
  const size_t scoreCount = static_cast<size_t>(tokens) * experts;
  const size_t slots = static_cast<size_t>(tokens) * out.kMax;
  const size_t chunkCells = static_cast<size_t>(chunkCount(tokens)) * experts;
  // One allocation: scores, ids, weights, counts, expert load, chunk counts, the invalid-token flag, and for a
  // family's rule its selection bias and per-token scratch.
  const bool byRule = !rule.plain();
  const size_t ruleCells = byRule ? experts + scoreCount * 4 : 0;
  const size_t bytes = (scoreCount + 2 * slots + tokens + experts + chunkCells + 1 + ruleCells) * 4;
  StreamBuffer buffer(bytes, stream.get(), "allocating GPU memory for route()");
  float* deviceScores = buffer.as<float>();
  int32_t* ids = reinterpret_cast<int32_t*>(deviceScores + scoreCount);
  float* weights = reinterpret_cast<float*>(ids + slots);
  int32_t* counts = reinterpret_cast<int32_t*>(weights + slots);
  int32_t* expertLoad = counts + tokens;
  int32_t* chunkCounts = expertLoad + experts;
  int32_t* firstInvalidToken = chunkCounts + chunkCells;
  float* selectionBias = reinterpret_cast<float*>(firstInvalidToken + 1);
  RouterRule deviceRule = rule;
  if (byRule && rule.selectionBias != nullptr) {
    checkCuda(cudaMemcpyAsync(selectionBias, rule.selectionBias, static_cast<size_t>(experts) * 4,
                              cudaMemcpyHostToDevice, stream.get()),
              "copying the selection bias to the GPU");
    deviceRule.selectionBias = selectionBias;
  }

  const int32_t noInvalidToken = INT_MAX;
  checkCuda(cudaMemcpy2DAsync(deviceScores, static_cast<size_t>(experts) * 4, scores, stride * 4,
                              static_cast<size_t>(experts) * 4, tokens, cudaMemcpyHostToDevice, stream.get()),
            "copying scores to the GPU");
  checkCuda(cudaMemsetAsync(expertLoad, 0, (experts + chunkCells) * 4, stream.get()), "clearing routing counts");
  checkCuda(cudaMemcpyAsync(firstInvalidToken, &noInvalidToken, 4, cudaMemcpyHostToDevice, stream.get()),
            "copying to the GPU");
  RouteLaunch launch;
  launch.scores = deviceScores;
  launch.scoreStride = experts;
  launch.tokens = tokens;
  launch.experts = experts;
  launch.logits = input == RouterInput::Logits;
  launch.policy = policy;
  launch.kMax = out.kMax;
  launch.ids = ids;
  launch.weights = weights;
  launch.counts = counts;
  launch.expertLoad = expertLoad;
  launch.chunkCounts = chunkCounts;
  launch.firstInvalidToken = firstInvalidToken;
  launch.rule = deviceRule;
  launch.ruleScratch = byRule ? selectionBias + experts : nullptr;
  launchRoute(launch, stream.get());
  const auto copyBack = [&](void* host, const void* device, size_t count) {
    checkCuda(cudaMemcpyAsync(host, device, count * 4, cudaMemcpyDeviceToHost, stream.get()),
              "copying the routing back");
  };
  copyBack(out.ids, ids, slots);
  copyBack(out.weights, weights, slots);
  copyBack(out.counts, counts, tokens);
  copyBack(out.expertLoad, expertLoad, experts);
  stream.synchronize("route() on the GPU");
}

}  // namespace dynamoe::cuda
