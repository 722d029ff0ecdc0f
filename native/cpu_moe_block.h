// The CPU MoeBlock: a packed cpu::MoeLayer run by the CPU kernels.
#pragma once

#include <memory>

#include "cpu/moe_layer.h"
#include "moe_block.h"

namespace dynamoe {

class CpuMoeBlock final : public MoeBlock {
 public:
  explicit CpuMoeBlock(std::unique_ptr<const cpu::MoeLayer> layer) : layer_(std::move(layer)) {}
  const cpu::MoeLayerConfig& config() const override { return layer_->config(); }
  size_t weightBytes() const override { return layer_->weightBytes(); }
  const char* device() const override { return "cpu"; }
  void forward(const float* x, int tokens, const RoutingPolicy& policy, float* out, const cpu::RoutingOutput& routing,
               const cpu::WorkCounters& work) const override {
    const size_t hidden = layer_->config().hidden;
    layer_->forward(x, hidden, tokens, policy, out, hidden, routing, work);
  }

 private:
  std::unique_ptr<const cpu::MoeLayer> layer_;
};

}  // namespace dynamoe
