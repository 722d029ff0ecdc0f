#include "cuda_backend.h"

#include "device_memory.h"
#include "device_model.h"
#include "device_ops.h"

namespace dynamoe::cuda {

namespace {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  void requireUsable() const override { requireDevice(); }
  std::shared_ptr<const MoeLayer> createMoeLayer(const MoeWeights& weights) const override {
    return uploadMoeLayer(weights);
  }
  void route(const float* scores, size_t stride, int tokens, int experts, RouterInput input,
             const RoutingPolicy& policy, const RouterRule& rule, const RoutingOutput& out) const override {
    routeOnDevice(scores, stride, tokens, experts, input, policy, rule, out);
  }
  void quantMatmul(QuantType type, const uint8_t* weights, int n, int k, const float* input, int m,
                   float* out) const override {
    quantMatmulOnDevice(type, weights, n, k, input, m, out);
  }
  void chooseTokens(const float* logits, int rows, int vocab, const TokenChoice* choices,
                    int32_t* tokens) const override {
    chooseTokensOnDevice(logits, rows, vocab, choices, tokens);
  }
  std::unique_ptr<Model> createModel(const GraphLayout& layout, DType dtype, int kvPoolTokens) const override {
    return std::make_unique<CudaModel>(layout, dtype, kvPoolTokens);
  }
};

}  // namespace

bool deviceMemoryNow(size_t* freeBytes, size_t* totalBytes) {
  if (!backendStatus().available) return false;
  deviceMemory(freeBytes, totalBytes);
  return true;
}

const Backend& cudaBackend() {
  static const CudaBackend backend;
  return backend;
}

}  // namespace dynamoe::cuda
