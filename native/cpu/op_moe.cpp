#include <vector>

#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class MoeOp : public GraphOp {
 public:
  MoeOp(int input, int output, int slot, std::shared_ptr<const MoeLayer> layer)
      : input_(input), output_(output), slot_(slot), layer_(std::move(layer)) {}

  void run(GraphStep& step) const override {
    const int experts = layer_->config().experts;
    const RoutingPolicy& policy = step.policies[slot_];
    const int kMax = policy.kMax(experts);
    std::vector<int32_t> ids(static_cast<size_t>(step.tokens) * kMax);
    std::vector<float> weights(ids.size());
    std::vector<int32_t> counts(step.tokens);
    std::vector<int32_t> load(experts);
    const MoeStepStats* stats = step.moeStats ? &step.moeStats[slot_] : nullptr;
    MoeForward call;
    call.x = step.buffers[input_];
    call.xStride = step.strides[input_];
    call.tokens = step.tokens;
    call.policy = &policy;
    call.out = step.buffers[output_];
    call.outStride = step.strides[output_];
    call.routing = {kMax, ids.data(), weights.data(), stats ? stats->counts : counts.data(),
                    stats ? stats->expertLoad : load.data()};
    call.stats = stats ? &stats->sums : nullptr;
    call.workspace = &step.cache->stepScratch();
    layer_->forward(call);
  }

  size_t weightBytes() const override { return layer_->weightBytes(); }

 private:
  int input_, output_, slot_;
  std::shared_ptr<const MoeLayer> layer_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const MoeNode& node, OpContext& context) {
  return std::make_unique<MoeOp>(node.input, node.output, node.slot, context.backend.createMoeLayer(node.weights));
}

}  // namespace dynamoe::cpu
