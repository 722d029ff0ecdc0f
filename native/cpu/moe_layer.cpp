#include "moe_layer.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include "../core/check_finite.h"
#include "combine.h"
#include "expert_activation.h"
#include "expert_plan.h"
#include "grouped_gemm.h"
#include "../core/router_stats.h"
#include "routing.h"
#include "thread_scratch.h"

namespace dynamoe::cpu {

namespace {

size_t paddedColumns(const PackedMatrix& m, Epilogue epilogue) {
  return static_cast<size_t>(m.panels()) * epilogueColumns(epilogue);
}

}  // namespace

CpuMoeLayer::PackedExpert CpuMoeLayer::packExpert(const ExpertSources& sources, int ffn, int hidden, DType dtype) {
  PackedExpert packed;
  packed.ffn = ffn;
  packed.gateUp = packGateUp(sources.gate, sources.up, ffn, hidden, dtype);
  packed.down = packColumns(sources.down, hidden, ffn, dtype);
  if (sources.gateBias != nullptr) packed.gateBias.assign(sources.gateBias, sources.gateBias + ffn);
  if (sources.upBias != nullptr) packed.upBias.assign(sources.upBias, sources.upBias + ffn);
  if (sources.downBias != nullptr) packed.downBias.assign(sources.downBias, sources.downBias + hidden);
  return packed;
}

CpuMoeLayer::CpuMoeLayer(const MoeWeights& weights) : config_(weights.config) {
  const MoeLayerConfig& config = weights.config;
  router_ = packColumns({weights.router, DType::F32}, config.routedSlots(), config.hidden, DType::F32);
  if (config.router.selectionBias != nullptr) {
    selectionBias_.assign(config.router.selectionBias, config.router.selectionBias + config.routedSlots());
  }
  config_.router.selectionBias = selectionBias_.empty() ? nullptr : selectionBias_.data();
  experts_.reserve(weights.experts.size());
  for (const ExpertSources& sources : weights.experts) {
    experts_.push_back(packExpert(sources, config.ffn, config.hidden, config.dtype));
  }
  if (weights.routerBias != nullptr) routerBias_.assign(weights.routerBias, weights.routerBias + config.routedSlots());
  separateActivation_ = config.activation != ExpertActivation::SwiGlu || config.weightOnInput;
  for (const PackedExpert& e : experts_) {
    separateActivation_ |= !e.gateBias.empty() || !e.upBias.empty();
    hasDownBias_ |= !e.downBias.empty();
    const auto data = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    biases_.gate.push_back(data(e.gateBias));
    biases_.up.push_back(data(e.upBias));
    biases_.down.push_back(data(e.downBias));
  }
  if (weights.hasShared) {
    const SharedExpertSources& shared = weights.shared;
    shared_ = std::make_unique<PackedExpert>(packExpert(shared.weights, shared.ffn, config.hidden, config.dtype));
    if (shared.gateWeight != nullptr) sharedGate_.assign(shared.gateWeight, shared.gateWeight + config.hidden);
  }
  // Scratch row strides: every routed expert has the same ffn; the shared expert may be wider.
  intermediateStride_ = paddedColumns(experts_[0].gateUp, Epilogue::SwiGlu);
  if (shared_) intermediateStride_ = std::max(intermediateStride_, paddedColumns(shared_->gateUp, Epilogue::SwiGlu));
  outputStride_ = paddedColumns(experts_[0].down, Epilogue::Scaled);
}

void CpuMoeLayer::runSeparateActivation(const ExpertPlan& plan, std::vector<GemmGroup> groups, float* intermediate,
                                        ScratchBuffers& buffers) const {
  // Raw gate/up sums: a whole panel (16 gate + 16 up columns) per 16 intermediate columns.
  const size_t rawStride = intermediateStride_ * 2;
  AlignedBuffer oversizeRaw;
  float* const raw = static_cast<float*>(buffers.get(
      ScratchSlot::GateUpRaw, static_cast<size_t>(plan.rows) * rawStride * sizeof(float), oversizeRaw));
  // Each group's first plan row, from where its output points in the intermediate rows.
  for (GemmGroup& group : groups) {
    const size_t firstRow = static_cast<size_t>(group.output - intermediate) / intermediateStride_;
    group.output = raw + firstRow * rawStride;
    group.outputStride = rawStride;
  }
  runGroupedGemm(groups, Epilogue::Scaled, &buffers);
  activateGateUpRows(plan, config_.experts, biases_, config_, shared_ ? shared_->ffn : 0, raw, rawStride,
                     intermediate, intermediateStride_);
}

size_t CpuMoeLayer::weightBytes() const {
  size_t bytes = router_.bytes() + (sharedGate_.size() + selectionBias_.size() + routerBias_.size()) * sizeof(float);
  for (const PackedExpert& e : experts_) {
    bytes += e.gateUp.bytes() + e.down.bytes() + (e.gateBias.size() + e.upBias.size() + e.downBias.size()) * sizeof(float);
  }
  if (shared_) bytes += shared_->gateUp.bytes() + shared_->down.bytes();
  return bytes;
}

void CpuMoeLayer::forward(const MoeForward& call) const {
  const float* const x = call.x;
  const size_t xStride = call.xStride;
  const int tokens = call.tokens;
  const RoutingOutput& routing = call.routing;
  ScratchBuffers& buffers = call.workspace ? workspaceScratch(*call.workspace) : threadScratchBuffers();
  const int hidden = config_.hidden;
  const int experts = config_.experts;
  const int routed = config_.routedSlots();
  checkFinite(x, tokens, hidden, xStride, "x", "feature");

  // 1. Router logits in fp32, then the routing policy.
  const size_t logitStride = paddedColumns(router_, Epilogue::Scaled);
  AlignedBuffer oversizeLogits;
  float* const logits = static_cast<float*>(
      buffers.get(ScratchSlot::RouterLogits, static_cast<size_t>(tokens) * logitStride * sizeof(float),
                  oversizeLogits));
  GemmGroup routerGemm;
  routerGemm.weights = &router_;
  routerGemm.rows = tokens;
  routerGemm.input = x;
  routerGemm.inputStride = xStride;
  routerGemm.output = logits;
  routerGemm.outputStride = logitStride;
  runGroupedGemm({routerGemm}, Epilogue::Scaled, &buffers);
  if (!routerBias_.empty()) {
    for (int t = 0; t < tokens; ++t) {
      float* row = logits + static_cast<size_t>(t) * logitStride;
      for (int e = 0; e < routed; ++e) row[e] += routerBias_[e];
    }
  }
  checkFinite(logits, tokens, routed, logitStride, "router logits (x . router weights)", "expert");
  const MoeRowRange whole{0, tokens, call.policy, call.stats, nullptr};
  const MoeRowRange* const ranges = call.ranges ? call.ranges : &whole;
  const int rangeCount = call.ranges ? call.rangeCount : 1;
  std::fill(routing.expertLoad, routing.expertLoad + routed, 0);
  std::vector<int32_t> rangeLoad(routed);
  for (int r = 0; r < rangeCount; ++r) {
    const MoeRowRange& range = ranges[r];
    validateRouterRule(config_.router, *range.policy, routed);
    const size_t slots = static_cast<size_t>(range.first) * routing.kMax;
    const RoutingOutput rows{routing.kMax, routing.ids + slots, routing.weights + slots, routing.counts + range.first,
                             range.expertLoad ? range.expertLoad : rangeLoad.data()};
    const float* rangeLogits = logits + static_cast<size_t>(range.first) * logitStride;
    routeTokens(rangeLogits, logitStride, range.rows, routed, RouterInput::Logits, *range.policy, config_.router,
                rows);
    for (int e = 0; e < routed; ++e) routing.expertLoad[e] += rows.expertLoad[e];
    if (range.stats != nullptr) {
      accumulateRouterStats(rangeLogits, logitStride, range.rows, routed, config_.router.scoring,
                            range.stats->probabilitySum, range.stats->entropySum);
    }
  }

  // 2. Rows grouped by expert; shared-expert rows (one per token) follow the routed ones.
  const int sharedRows = shared_ ? 1 : 0;
  ExpertPlan plan = planExpertRows(routing, tokens, experts, sharedRows);
  if (shared_ && !sharedGate_.empty()) {
    for (int t = 0; t < tokens; ++t) {
      const float* row = x + static_cast<size_t>(t) * xStride;
      float dot = 0.0f;
      for (int h = 0; h < hidden; ++h) dot += sharedGate_[h] * row[h];
      plan.arrays.rowWeight[plan.routedRows + t] = sharedExpertGate(dot);
    }
  }

  // 3. Scratch sized by the rows actually routed, so dynamic routing pays only for what it uses.
  const size_t intermediateStride = intermediateStride_;
  const size_t outputStride = outputStride_;
  const size_t rows = static_cast<size_t>(plan.rows);
  AlignedBuffer oversizeIntermediate;
  AlignedBuffer oversizeRowOutput;
  float* const intermediate = static_cast<float*>(
      buffers.get(ScratchSlot::Intermediate, rows * intermediateStride * sizeof(float), oversizeIntermediate));
  float* const rowOutput =
      static_cast<float*>(buffers.get(ScratchSlot::RowOutput, rows * outputStride * sizeof(float), oversizeRowOutput));

  std::vector<std::atomic<int32_t>> gateUpRows(experts + 1);
  std::vector<std::atomic<int32_t>> downRows(experts + 1);
  std::vector<GemmGroup> gateUpGroups;
  std::vector<GemmGroup> downGroups;
  // Llama 4's weights scaled the routed rows' activations already; the shared rows keep their gate.
  const auto addGroup = [&](const PackedExpert& expert, int firstRow, int rowCount, int counter, bool weighted) {
    GemmGroup first;
    first.weights = &expert.gateUp;
    first.rows = rowCount;
    first.input = x;
    first.inputStride = xStride;
    first.inputRowIndex = plan.arrays.rowToken + firstRow;
    first.output = intermediate + static_cast<size_t>(firstRow) * intermediateStride;
    first.outputStride = intermediateStride;
    first.rowsComputed = &gateUpRows[counter];
    gateUpGroups.push_back(first);

    GemmGroup second;
    second.weights = &expert.down;
    second.rows = rowCount;
    second.input = first.output;
    second.inputStride = intermediateStride;
    second.output = rowOutput + static_cast<size_t>(firstRow) * outputStride;
    second.outputStride = outputStride;
    second.rowScale = weighted ? plan.arrays.rowWeight + firstRow : nullptr;
    second.rowsComputed = &downRows[counter];
    downGroups.push_back(second);
  };
  for (int e = 0; e < experts; ++e) {
    addGroup(experts_[e], plan.arrays.expertOffsets[e], plan.arrays.expertOffsets[e + 1] - plan.arrays.expertOffsets[e], e,
             !config_.weightOnInput);
  }
  if (shared_) addGroup(*shared_, plan.routedRows, tokens, experts, true);

  if (separateActivation_) {
    runSeparateActivation(plan, gateUpGroups, intermediate, buffers);
  } else {
    runGroupedGemm(gateUpGroups, Epilogue::SwiGlu, &buffers);
  }
  runGroupedGemm(downGroups, Epilogue::Scaled, &buffers);
  if (hasDownBias_) addDownBiasRows(plan, experts, biases_, hidden, rowOutput, outputStride);
  const ZeroExpertRows zeroRows{experts, config_.zeroExperts > 0 && config_.zeroKind == ZeroExpertKind::Identity, x,
                                xStride};
  combineExpertRows(plan, routing, tokens, hidden, sharedRows, rowOutput, outputStride, zeroRows, call.out,
                    call.outStride);

  for (int e = 0; e < experts; ++e) {
    if (call.work.gateUpRows) call.work.gateUpRows[e] = gateUpRows[e].load();
    if (call.work.downRows) call.work.downRows[e] = downRows[e].load();
  }
}

}  // namespace dynamoe::cpu
