// One MoE layer on some device: what the JS MoELayer class drives, whether its weights live in CPU or GPU memory.
#pragma once

#include <cstddef>

#include "cpu/moe_layer.h"
#include "errors.h"
#include "routing_policy.h"

namespace dynamoe {

// Kernel time of each stage of one forward, in microseconds (CUDA events), averaged over the profiled runs.
struct StageTimes {
  double routeUs = 0;     // router logits GEMM + fused softmax/selection
  double planUs = 0;      // expert offsets, row plan and tile table
  double gemm1Us = 0;     // grouped GEMM 1 + SwiGLU
  double gemm2Us = 0;     // grouped GEMM 2 x routing weight
  double finalizeUs = 0;  // per-token sum (+ shared expert)
  double totalUs = 0;     // the whole forward on the device, copies excluded
  int runs = 0;
};

class MoeBlock {
 public:
  virtual ~MoeBlock() = default;
  virtual const cpu::MoeLayerConfig& config() const = 0;
  virtual size_t weightBytes() const = 0;
  // "cpu" or "cuda".
  virtual const char* device() const = 0;
  // x: [tokens][hidden] host floats, out: [tokens][hidden]; routing and counters are host buffers. Thread-safe.
  virtual void forward(const float* x, int tokens, const RoutingPolicy& policy, float* out,
                       const cpu::RoutingOutput& routing, const cpu::WorkCounters& work) const = 0;
  // Times `runs` forwards stage by stage on the device (after one warm-up run).
  virtual StageTimes profile(const float* x, int tokens, const RoutingPolicy& policy, int runs) const {
    throw Error(code::kUnsupported, "profiling by stage needs a layer on device 'cuda'");
  }
};

}  // namespace dynamoe
