// The MoE block on the GPU: weights resident in device memory, a forward = route -> plan -> grouped GEMM 1 + SwiGLU
// -> grouped GEMM 2 x routing weight -> finalize, all enqueued on one stream with no host synchronisation between
// the stages.
#pragma once

#include <vector>

#include "../native/core/backend.h"
#include "device_buffer.h"
#include "device_step.h"
#include "moe_kernels.h"
#include "stage_clock.h"

namespace dynamoe::cuda {

// One forward of a model step, all in device memory and enqueued on `stream` (no copies, no synchronisation).
struct DeviceMoeCall {
  const float* x = nullptr;  // [tokens][xStride] f32, xStride = paddedDimension(hidden) with zeros past hidden
  int xStride = 0;
  float* out = nullptr;      // [tokens][outStride] f32; columns past hidden are left as they are
  int outStride = 0;
  int tokens = 0;
  int kMax = 0;              // slots per token: the largest of the segments' policies
  RoutingPolicy policy;      // every token's, unless segmentPolicies is set
  const RoutingPolicy* segmentPolicies = nullptr;  // device [segments]
  const int32_t* tokenSegments = nullptr;          // device [tokens]
  int32_t* ids = nullptr;          // device [tokens][kMax] out
  float* weights = nullptr;        // device [tokens][kMax] out
  int32_t* counts = nullptr;       // device [tokens] out
  float* routerLogits = nullptr;   // device [tokens][routed slots: FFN + zero-computation experts] out, or null
  int32_t* firstInvalidToken = nullptr;  // device [1], INT_MAX on entry: lowest token with non-finite router logits
  cudaStream_t stream = nullptr;
};

class DeviceMoeLayer final : public MoeLayer {
 public:
  explicit DeviceMoeLayer(const MoeWeights& weights);

  const MoeLayerConfig& config() const override { return config_; }
  size_t weightBytes() const override;
  const char* device() const override { return "cuda"; }
  // Rows are contiguous (strides == hidden); router statistics are not computed on the GPU yet.
  void forward(const MoeForward& call) const override;
  StageTimes profile(const float* x, int tokens, const RoutingPolicy& policy, int runs) const override;
  // A model's MoE op: the same stages on device buffers; scratch from `arena`.
  void enqueue(const DeviceMoeCall& call, StepArena& arena) const;

 private:
  struct ForwardBuffers;
  void run(const float* x, int tokens, const RoutingPolicy& policy, float* out, const RoutingOutput& routing,
           const WorkCounters& work, StageClock* clock) const;
  void runPass(const ForwardBuffers& io, int firstToken, int tokens, const RoutingPolicy& policy, int pass,
               cudaStream_t stream, StageClock* clock) const;
  int tokensPerPass(int tokens, int kMax) const;

  MoeLayerConfig config_;
  int paddedHidden_ = 0;
  int paddedFfn_ = 0;
  int sharedFfn_ = 0;        // 0: no shared expert
  int paddedSharedFfn_ = 0;
  bool sharedGated_ = false;
  DType dtype_ = DType::F32;  // of the activations and plain weights: config's, or bf16 for a quantized layer
  QuantType gateUpQuant_ = QuantType::None;  // each weight kind's GGUF type (None: plain values of dtype_)
  QuantType downQuant_ = QuantType::None;
  QuantType sharedGateUpQuant_ = QuantType::None;
  QuantType sharedDownQuant_ = QuantType::None;
  int layerId_ = 0;          // for the NVTX ranges
  int multiprocessors_ = 0;
  DeviceBuffer router_;        // f32 [experts][paddedHidden]
  RouterRule rule_;            // the family's router rule, its selection bias in device memory (selectionBias_)
  DeviceBuffer selectionBias_;  // f32 [experts], when the rule has one
  // Plain weights: [rows][padded k] of dtype_; quantized: rows of quantRowBytes(type, padded k) bytes.
  DeviceBuffer gateUp_;        // [experts][2 * paddedFfn][paddedHidden], gate/up interleaved by 8 rows
  DeviceBuffer down_;          // [experts][paddedHidden][paddedFfn]
  DeviceBuffer sharedGateUp_;  // [2 * paddedSharedFfn][paddedHidden]
  DeviceBuffer sharedDown_;    // [paddedHidden][paddedSharedFfn]
  DeviceBuffer sharedGate_;    // f32 [paddedHidden]
  // gpt-oss-style layers (the CPU's order, expert_bias_kernels.cu): f32 biases, zero where an expert has none.
  bool separateActivation_ = false;  // GEMM 1 writes raw sums, then biases + activation (config_.activation)
  bool hasDownBias_ = false;
  DeviceBuffer routerBias_;    // [experts], or empty
  DeviceBuffer gateBias_;      // [experts][paddedFfn], or empty
  DeviceBuffer upBias_;        // [experts][paddedFfn], or empty
  DeviceBuffer downBias_;      // [experts][paddedHidden], or empty
};

}  // namespace dynamoe::cuda
