// The MoE block on the CPU: route -> plan -> grouped GEMM 1 + SwiGLU -> grouped GEMM 2 x routing weight -> combine.
#pragma once

#include <memory>
#include <vector>

#include "../core/backend.h"
#include "expert_activation.h"
#include "grouped_gemm.h"
#include "packed_matrix.h"

namespace dynamoe::cpu {

class CpuMoeLayer final : public MoeLayer {
 public:
  // Packs the weights (converting to `config.dtype`); the sources are only read during construction.
  explicit CpuMoeLayer(const MoeWeights& weights);

  const MoeLayerConfig& config() const override { return config_; }
  size_t weightBytes() const override;
  const char* device() const override { return "cpu"; }
  // x must be finite. The workspace, when given, is a ScratchBuffers (a sequence's); null means the calling
  // thread's. Safe to call from several threads at once (with different workspaces).
  void forward(const MoeForward& call) const override;

 private:
  struct PackedExpert {
    int ffn = 0;
    PackedMatrix gateUp;
    PackedMatrix down;
    std::vector<float> gateBias, upBias, downBias;  // empty when the expert has none
  };
  static PackedExpert packExpert(const ExpertSources& sources, int ffn, int hidden, DType dtype);
  // Gate/up GEMM of `groups` (writing `intermediate`'s rows) with raw sums, then the activation pass over them.
  void runSeparateActivation(const ExpertPlan& plan, std::vector<GemmGroup> groups, float* intermediate,
                             ScratchBuffers& buffers) const;

  MoeLayerConfig config_;
  PackedMatrix router_;  // f32 whatever the expert dtype: router math runs in fp32
  std::vector<PackedExpert> experts_;
  std::unique_ptr<PackedExpert> shared_;
  std::vector<float> sharedGate_;
  std::vector<float> selectionBias_;  // [routedSlots] or empty; config_.router points at it
  std::vector<float> routerBias_;  // [routedSlots] or empty
  // Gate/up sums written raw and finished by expert_activation.cpp (expert biases, or a non-SwiGLU activation).
  bool separateActivation_ = false;
  ExpertBiases biases_;  // views of experts_' bias vectors
  bool hasDownBias_ = false;
  size_t intermediateStride_ = 0;  // floats per row of the SwiGLU output scratch
  size_t outputStride_ = 0;        // floats per row of the expert output scratch
};

}  // namespace dynamoe::cpu
