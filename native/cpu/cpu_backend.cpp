#include "cpu_backend.h"

#include "cpu_model.h"
#include "moe_layer.h"
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
