// The MoE block on the CPU: route -> plan -> grouped GEMM 1 + SwiGLU -> grouped GEMM 2 x routing weight -> combine.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "packed_matrix.h"
#include "routing.h"
#include "thread_scratch.h"

namespace dynamoe::cpu {

struct ExpertSources {
  MatrixSource gate;  // [ffn][hidden]
  MatrixSource up;    // [ffn][hidden]
  MatrixSource down;  // [hidden][ffn]
};

struct SharedExpertSources {
  int ffn = 0;
  ExpertSources weights;
  const float* gateWeight = nullptr;  // [hidden]; when set, the shared output is scaled by sigmoid(gateWeight . x)
};

struct MoeLayerConfig {
  int hidden = 0;
  int ffn = 0;
  int experts = 0;
  DType dtype = DType::F32;
};

// Router statistics summed over a forward's tokens (filled when requested).
struct RouterStatsSums {
  double* probabilitySum = nullptr;  // [experts]: sum over tokens of the full-softmax P_e
  double* entropySum = nullptr;      // [1]: sum over tokens of -sum_e P_e log P_e
};

// Rows each expert's GEMMs multiplied in one forward (filled by the kernels, so tests can hold them to the routing).
struct WorkCounters {
  int32_t* gateUpRows = nullptr;  // [experts]
  int32_t* downRows = nullptr;    // [experts]
};

class MoeLayer {
 public:
  // Packs the weights (converting to `config.dtype`); the sources are only read during construction.
  MoeLayer(const MoeLayerConfig& config, const float* router, const std::vector<ExpertSources>& experts,
           const SharedExpertSources* shared);

  const MoeLayerConfig& config() const { return config_; }
  bool hasSharedExpert() const { return shared_ != nullptr; }
  size_t weightBytes() const;

  // x: [tokens][hidden] (finite) with row stride xStride, out: [tokens][hidden] with row stride outStride.
  // `scratch`: the buffers this call reuses (a session's); null means the calling thread's.
  // Safe to call from several threads at once (with different scratch).
  void forward(const float* x, size_t xStride, int tokens, const RoutingPolicy& policy, float* out, size_t outStride,
               const RoutingOutput& routing, const WorkCounters& work, const RouterStatsSums* stats = nullptr,
               ScratchBuffers* scratch = nullptr) const;

 private:
  struct PackedExpert {
    int ffn = 0;
    PackedMatrix gateUp;
    PackedMatrix down;
  };
  static PackedExpert packExpert(const ExpertSources& sources, int ffn, int hidden, DType dtype);

  MoeLayerConfig config_;
  PackedMatrix router_;  // f32 whatever the expert dtype: router math runs in fp32
  std::vector<PackedExpert> experts_;
  std::unique_ptr<PackedExpert> shared_;
  std::vector<float> sharedGate_;
  size_t intermediateStride_ = 0;  // floats per row of the SwiGLU output scratch
  size_t outputStride_ = 0;        // floats per row of the expert output scratch
};

}  // namespace dynamoe::cpu
