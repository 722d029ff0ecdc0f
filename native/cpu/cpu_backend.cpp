#include "cpu_backend.h"

#include <algorithm>
#include <vector>

#include "cpu_model.h"
#include "grouped_gemm.h"
#include "moe_layer.h"
#include "packed_matrix.h"
#include "routing.h"

namespace dynamoe::cpu {

namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  void requireUsable() const override {}
  std::shared_ptr<const MoeLayer> createMoeLayer(const MoeWeights& weights) const override {
    return std::make_shared<const CpuMoeLayer>(weights);
  }
  void route(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
             const RoutingPolicy& policy, const RouterRule& rule, const RoutingOutput& out) const override {
    routeTokens(scores, stride, tokens, experts, input, policy, rule, out);
  }
  void chooseTokens(const float* logits, int rows, int vocab, const TokenChoice* choices,
                    int32_t* tokens) const override {
    for (int r = 0; r < rows; ++r) tokens[r] = chooseToken(logits + static_cast<size_t>(r) * vocab, choices[r]);
  }
  void quantMatmul(QuantType type, const uint8_t* weights, int n, int k, const float* input, int m,
                   float* out) const override {
    const PackedMatrix packed = packColumns(MatrixSource{weights, DType::F32, type}, n, k, DType::F32);
    const size_t stride = static_cast<size_t>(packed.panels()) * kPanelWidth;
    std::vector<float> output(static_cast<size_t>(m) * stride, 0.0f);
    GemmGroup group;
    group.weights = &packed;
    group.rows = m;
    group.input = input;
    group.inputStride = static_cast<size_t>(k);
    group.output = output.data();
    group.outputStride = stride;
    runGroupedGemm({group}, Epilogue::Scaled);
    for (int r = 0; r < m; ++r) std::copy_n(output.data() + r * stride, n, out + static_cast<size_t>(r) * n);
  }
  std::unique_ptr<Model> createModel(const GraphLayout& layout, DType dtype, int kvPoolTokens) const override {
    return std::make_unique<CpuModel>(*this, layout, dtype, kvPoolTokens);
  }
};

}  // namespace

const Backend& cpuBackend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace dynamoe::cpu
