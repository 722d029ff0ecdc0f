#include <algorithm>
#include <vector>

#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class MoeOp : public GraphOp {
 public:
  MoeOp(int input, int output, int slot, std::shared_ptr<const MoeLayer> layer)
      : input_(input), output_(output), slot_(slot), layer_(std::move(layer)) {}

  // One forward over every segment's rows (the experts' weights read once for all of them), each segment's rows
  // routed by its own policy, with its own statistics.
  void run(GraphStep& step) const override {
    const int experts = layer_->config().experts;
    const int slots = layer_->config().routedSlots();
    int kMax = 1;
    for (const SegmentRows& segment : step.segments) {
      kMax = std::max(kMax, segment.request->policies[slot_].kMax(slots));
    }
    std::vector<int32_t> ids(static_cast<size_t>(step.tokens) * kMax);
    std::vector<float> weights(ids.size());
    std::vector<int32_t> counts(step.tokens);
    std::vector<int32_t> load(slots);
    std::vector<MoeRowRange> ranges;
    for (const SegmentRows& segment : step.segments) {
      const StepSegment& request = *segment.request;
      const MoeStepStats* stats = request.moeStats ? &request.moeStats[slot_] : nullptr;
      ranges.push_back({segment.firstRow, segment.rows, &request.policies[slot_], stats ? &stats->sums : nullptr,
                        stats ? stats->expertLoad : nullptr});
    }
    MoeForward call;
    call.x = step.buffers[input_];
    call.xStride = step.strides[input_];
    call.tokens = step.tokens;
    call.policy = ranges[0].policy;
    call.ranges = ranges.data();
    call.rangeCount = static_cast<int>(ranges.size());
    call.out = step.buffers[output_];
    call.outStride = step.strides[output_];
    call.routing = {kMax, ids.data(), weights.data(), counts.data(), load.data()};
    call.workspace = step.scratch;
    layer_->forward(call);
    for (const SegmentRows& segment : step.segments) {
      const MoeStepStats* stats = segment.request->moeStats;
      if (stats && stats[slot_].counts) {
        std::copy_n(counts.data() + segment.firstRow, segment.rows, stats[slot_].counts);
      }
      if (stats && stats[slot_].ffnCounts) {
        for (int r = 0; r < segment.rows; ++r) {
          const int32_t* rowIds = ids.data() + static_cast<size_t>(segment.firstRow + r) * kMax;
          stats[slot_].ffnCounts[r] = static_cast<int32_t>(std::count_if(
              rowIds, rowIds + counts[segment.firstRow + r], [experts](int32_t id) { return id < experts; }));
        }
      }
    }
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
