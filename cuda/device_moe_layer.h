// The MoE block on the GPU: weights resident in device memory, a forward = route -> plan -> grouped GEMM 1 + SwiGLU
// -> grouped GEMM 2 x routing weight -> finalize, all enqueued on one stream with no host synchronisation between
// the stages.
#pragma once

#include <vector>

#include "../native/moe_block.h"
#include "device_buffer.h"
#include "moe_kernels.h"
#include "stage_clock.h"

namespace dynamoe::cuda {

class DeviceMoeLayer final : public MoeBlock {
 public:
  DeviceMoeLayer(const cpu::MoeLayerConfig& config, const float* router,
                 const std::vector<cpu::ExpertSources>& experts, const cpu::SharedExpertSources* shared);

  const cpu::MoeLayerConfig& config() const override { return config_; }
  size_t weightBytes() const override;
  const char* device() const override { return "cuda"; }
  void forward(const float* x, int tokens, const RoutingPolicy& policy, float* out, const cpu::RoutingOutput& routing,
               const cpu::WorkCounters& work) const override;
  StageTimes profile(const float* x, int tokens, const RoutingPolicy& policy, int runs) const override;

 private:
  struct ForwardBuffers;
  void run(const float* x, int tokens, const RoutingPolicy& policy, float* out, const cpu::RoutingOutput& routing,
           const cpu::WorkCounters& work, StageClock* clock) const;
  void runPass(const ForwardBuffers& io, int firstToken, int tokens, const RoutingPolicy& policy, int pass,
               cudaStream_t stream, StageClock* clock) const;
  int tokensPerPass(int tokens, int kMax) const;

  cpu::MoeLayerConfig config_;
  int paddedHidden_ = 0;
  int paddedFfn_ = 0;
  int sharedFfn_ = 0;        // 0: no shared expert
  int paddedSharedFfn_ = 0;
  bool sharedGated_ = false;
  int layerId_ = 0;          // for the NVTX ranges
  int multiprocessors_ = 0;
  DeviceBuffer router_;        // f32 [experts][paddedHidden]
  DeviceBuffer gateUp_;        // [experts][2 * paddedFfn][paddedHidden], gate/up interleaved by 8 rows
  DeviceBuffer down_;          // [experts][paddedHidden][paddedFfn]
  DeviceBuffer sharedGateUp_;  // [2 * paddedSharedFfn][paddedHidden]
  DeviceBuffer sharedDown_;    // [paddedHidden][paddedSharedFfn]
  DeviceBuffer sharedGate_;    // f32 [paddedHidden]
};

}  // namespace dynamoe::cuda
