// The MoE block of a model step on the GPU: the resident layer's route -> plan -> grouped GEMMs -> finalize on the
// step's device buffers, every segment's rows routed by its own policy in one pass (the experts' weights read once
// for all of them). Router statistics are computed on the host from the router logits copied back after the step,
// by the core's routine the CPU uses, so they have the CPU's arithmetic.
#include <algorithm>
#include <cstring>
#include <string>

#include "../native/core/router_rule.h"
#include "../native/core/router_stats.h"
#include "device_graph_ops.h"
#include "device_moe_layer.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {

namespace {

// Lowest token with non-finite router logits: none while it holds this (cudaMemset's byte pattern 0x7f; token indices
// are below 2^20).
constexpr int32_t kNoInvalidToken = 0x7f7f7f7f;

class DeviceMoeOp : public DeviceOp {
 public:
  DeviceMoeOp(int input, int output, int slot, std::shared_ptr<const DeviceMoeLayer> layer)
      : input_(input), output_(output), slot_(slot), layer_(std::move(layer)) {}

  void enqueue(DeviceStep& step) const override {
    // The router's columns: FFN experts, then zero-computation ones (ids >= the FFN count).
    const int experts = layer_->config().routedSlots();
    const int tokens = step.tokens;
    const int segments = static_cast<int>(step.segments.size());
    int kMax = 1;
    bool stats = false;
    for (const DeviceSegmentRows& segment : step.segments) {
      // A policy the family's rule cannot apply (more experts than its kept groups hold) is refused, as on the CPU.
      validateRouterRule(layer_->config().router, segment.request->policies[slot_], experts);
      kMax = std::max(kMax, segment.request->policies[slot_].kMax(experts));
      stats = stats || segment.request->moeStats != nullptr;
    }
    // One block for what the host reads back: [invalid token | counts | ids | router logits when statistics are
    // asked]; the weights follow, on the device only.
    const size_t countsAt = 4;
    const size_t idsAt = countsAt + static_cast<size_t>(tokens) * 4;
    const size_t logitsAt = idsAt + static_cast<size_t>(tokens) * kMax * 4;
    const size_t readBytes = stats ? logitsAt + static_cast<size_t>(tokens) * experts * 4 : countsAt;
    const size_t weightsAt = (readBytes + 255) / 256 * 256;
    char* block = static_cast<char*>(step.arena->take(weightsAt + static_cast<size_t>(tokens) * kMax * 4, "MoE routing"));
    checkCuda(cudaMemsetAsync(block, 0x7f, 4, step.stream), "clearing the router check");

    DeviceMoeCall call;
    call.x = step.buffers[input_];
    call.xStride = static_cast<int>(step.strides[input_]);
    call.out = step.buffers[output_];
    call.outStride = static_cast<int>(step.strides[output_]);
    call.tokens = tokens;
    call.kMax = kMax;
    call.policy = step.segments[0].request->policies[slot_];
    // A captured step replays with other requests: it reads every segment's policy from the device then.
    if (segments > 1 || step.capturing) {
      call.segmentPolicies = step.moePolicies + static_cast<size_t>(slot_) * segments;
      call.tokenSegments = step.rowSegments;
    }
    call.firstInvalidToken = reinterpret_cast<int32_t*>(block);
    call.counts = reinterpret_cast<int32_t*>(block + countsAt);
    call.ids = reinterpret_cast<int32_t*>(block + idsAt);
    call.routerLogits = stats ? reinterpret_cast<float*>(block + logitsAt) : nullptr;
    call.weights = reinterpret_cast<float*>(block + weightsAt);
    call.stream = step.stream;
    layer_->enqueue(call, *step.arena);

    step.readbacks.push_back({block, readBytes, [this, kMax, experts, stats, countsAt, idsAt,
                                                 logitsAt](const void* host, const DeviceStep& done) {
                                const char* bytes = static_cast<const char*>(host);
                                int32_t invalid;
                                std::memcpy(&invalid, bytes, 4);
                                if (invalid != kNoInvalidToken) {
                                  throw Error(code::kValue,
                                              "router logits (x . router weights) must be finite, found a NaN or "
                                              "infinity at row " + std::to_string(invalid) + " of a step");
                                }
                                if (stats) {
                                  writeStats(done.segments, reinterpret_cast<const int32_t*>(bytes + countsAt),
                                             reinterpret_cast<const int32_t*>(bytes + idsAt),
                                             reinterpret_cast<const float*>(bytes + logitsAt), kMax, experts);
                                }
                              }});
  }

  size_t weightBytes() const override { return layer_->weightBytes(); }
  const char* name() const override { return "moe"; }

 private:
  // Each segment's statistics as the CPU's MoE op writes them (native/cpu/op_moe.cpp).
  void writeStats(const std::vector<DeviceSegmentRows>& rows, const int32_t* counts, const int32_t* ids,
                  const float* logits, int kMax, int experts) const {
    for (const DeviceSegmentRows& segment : rows) {
      const MoeStepStats* all = segment.request->moeStats;
      if (all == nullptr) continue;
      const MoeStepStats& stats = all[slot_];
      if (stats.counts) std::copy_n(counts + segment.firstRow, segment.rows, stats.counts);
      if (stats.ffnCounts) {
        const int ffnExperts = layer_->config().experts;
        for (int r = 0; r < segment.rows; ++r) {
          const int32_t* rowIds = ids + static_cast<size_t>(segment.firstRow + r) * kMax;
          stats.ffnCounts[r] = static_cast<int32_t>(std::count_if(
              rowIds, rowIds + counts[segment.firstRow + r], [ffnExperts](int32_t id) { return id < ffnExperts; }));
        }
      }
      if (stats.expertLoad) {
        std::fill(stats.expertLoad, stats.expertLoad + experts, 0);
        for (int r = segment.firstRow; r < segment.firstRow + segment.rows; ++r) {
          for (int j = 0; j < counts[r]; ++j) ++stats.expertLoad[ids[static_cast<size_t>(r) * kMax + j]];
        }
      }
      if (stats.sums.probabilitySum != nullptr) {
        accumulateRouterStats(logits + static_cast<size_t>(segment.firstRow) * experts, experts, segment.rows,
                              experts, layer_->config().router.scoring, stats.sums.probabilitySum,
                              stats.sums.entropySum);
      }
    }
  }

  int input_, output_, slot_;
  std::shared_ptr<const DeviceMoeLayer> layer_;
};

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const MoeNode& node, DeviceOpContext& context) {
  if (node.weights.config.hidden != context.layout.bufferWidths[node.input]) {
    throw Error(code::kShape, "a MoE node's hidden size must be its input buffer's width");
  }
  return std::make_unique<DeviceMoeOp>(node.input, node.output, node.slot,
                                       std::make_shared<const DeviceMoeLayer>(node.weights));
}

}  // namespace dynamoe::cuda
