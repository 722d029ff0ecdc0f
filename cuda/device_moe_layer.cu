#include "device_moe_layer.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <memory>
#include <string>

#include "../native/core/check_finite.h"
#include "cuda_backend.h"
#include "device_memory.h"
#include "device_ops.h"
#include "device_weights.h"
#include "nvtx_range.h"
#include "scratch_layout.h"
#include "stage_clock.h"

namespace dynamoe::cuda {

namespace {

// Scratch of one pass stays under this; longer inputs run in several passes of whole tokens (same results).
constexpr size_t kPassScratchBytes = size_t{1} << 30;

std::atomic<int> nextLayerId{0};

void runGemm(const GroupedGemm& gemm, int groups, Epilogue epilogue, bool decode, cudaStream_t stream) {
  if (decode) {
    launchExpertGemv(gemm, groups, epilogue, stream);
  } else if (gemm.dtype == DType::F32) {
    launchGemmSimtF32(gemm, epilogue, stream);
  } else {
    launchGemmMma(gemm, epilogue, stream);
  }
}

// [rows.size()][paddedLength] f32: row i is rows[i]'s `length` values, zeros past them or where rows[i] is null.
DeviceBuffer uploadBiasRows(const std::vector<const float*>& rows, int length, int paddedLength, const char* what) {
  std::vector<float> host(rows.size() * static_cast<size_t>(paddedLength), 0.0f);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] != nullptr) std::copy_n(rows[i], length, host.begin() + static_cast<std::ptrdiff_t>(i * paddedLength));
  }
  DeviceBuffer buffer(host.size() * sizeof(float), what);
  checkCuda(cudaMemcpy(buffer.as<void>(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), what);
  return buffer;
}

// The weight layout of a GEMM over [groups][n][k] matrices: plain values of `dtype`, or rows of `quant` blocks.
void setWeights(GroupedGemm* gemm, QuantType quant, DType dtype, int n, int k) {
  gemm->quant = quant;
  gemm->weightRowBytes = packedRowBytes(quant, dtype, k);
  gemm->groupStride = quant != QuantType::None ? static_cast<size_t>(n) * gemm->weightRowBytes
                                               : static_cast<size_t>(n) * k;  // elements
}

}  // namespace

// Device arrays that live for the whole forward (all passes).
struct DeviceMoeLayer::ForwardBuffers {
  int kMax = 0;
  const float* x = nullptr;      // [tokens][xStride]
  int xStride = 0;               // hidden or paddedHidden (a model's buffer, zero past hidden)
  float* out = nullptr;          // [tokens][outStride]
  int outStride = 0;
  float* routerLogits = nullptr;  // [tokens][routed slots] kept for the caller, or null (pass scratch)
  const RoutingPolicy* segmentPolicies = nullptr;  // device, with tokenSegments: per-token policies
  const int32_t* tokenSegments = nullptr;
  int32_t* ids = nullptr;        // [tokens][kMax]
  float* weights = nullptr;      // [tokens][kMax]
  int32_t* counts = nullptr;     // [tokens]
  int32_t* passLoads = nullptr;  // [passes][routed slots]
  int32_t* gateUpRows = nullptr;  // [experts]
  int32_t* downRows = nullptr;    // [experts]
  int32_t* firstInvalidToken = nullptr;  // [1]
};

DeviceMoeLayer::DeviceMoeLayer(const MoeWeights& weights) : config_(weights.config), layerId_(nextLayerId++) {
  const MoeLayerConfig& config = weights.config;
  const float* router = weights.router;
  const SharedExpertSources* shared = weights.hasShared ? &weights.shared : nullptr;
  requireDevice();
  // The families' router rules run in the route stage (the core's per-token selection). The router scores the
  // FFN experts and the zero-computation ones (LongCat-Flash); the plan gives the latter no GEMM rows, and finalize
  // adds an identity expert's weight x input.
  const int routed = config.routedSlots();
  if (routed > kMaxDeviceExperts) {
    throw Error(code::kUnsupported, "the CUDA router handles up to " + std::to_string(kMaxDeviceExperts) +
                                        " experts, this layer routes " + std::to_string(routed) + "; use device 'cpu'");
  }
  keepPoolMemory();
  multiprocessors_ = backendStatus().multiprocessors;
  paddedHidden_ = paddedDimension(config.hidden);
  paddedFfn_ = paddedDimension(config.ffn);
  std::vector<MatrixSource> gate, up, down;
  for (const ExpertSources& e : weights.experts) {
    gate.push_back(e.gate);
    up.push_back(e.up);
    down.push_back(e.down);
  }
  std::vector<MatrixSource> gateAndUp = gate;
  gateAndUp.insert(gateAndUp.end(), up.begin(), up.end());
  // Quantized experts stay in their GGUF blocks; every quantized layer computes with bf16 activations.
  gateUpQuant_ = sharedQuantType(gateAndUp, "the experts' gate and up weights");
  downQuant_ = sharedQuantType(down, "the experts' down weights");
  if (shared != nullptr) {
    sharedGateUpQuant_ = sharedQuantType({shared->weights.gate, shared->weights.up}, "the shared expert's gate and up");
    sharedDownQuant_ = sharedQuantType({shared->weights.down}, "the shared expert's down weights");
  }
  const bool quantized = gateUpQuant_ != QuantType::None || downQuant_ != QuantType::None ||
                         sharedGateUpQuant_ != QuantType::None || sharedDownQuant_ != QuantType::None;
  dtype_ = quantized ? DType::BF16 : config.dtype;
  size_t bytes = static_cast<size_t>(routed) * paddedHidden_ * 4 +
                 static_cast<size_t>(config.experts) *
                     (static_cast<size_t>(2) * paddedFfn_ * packedRowBytes(gateUpQuant_, dtype_, paddedHidden_) +
                      static_cast<size_t>(paddedHidden_) * packedRowBytes(downQuant_, dtype_, paddedFfn_));
  if (shared != nullptr) {
    sharedFfn_ = shared->ffn;
    paddedSharedFfn_ = paddedDimension(shared->ffn);
    sharedGated_ = shared->gateWeight != nullptr;
    bytes += static_cast<size_t>(2) * paddedSharedFfn_ * packedRowBytes(sharedGateUpQuant_, dtype_, paddedHidden_) +
             static_cast<size_t>(paddedHidden_) * packedRowBytes(sharedDownQuant_, dtype_, paddedSharedFfn_) +
             paddedHidden_ * 4;
  }
  requireFreeMemory(bytes, "the MoE layer's weights");

  router_ = uploadMatrices({{router, DType::F32, QuantType::None}}, routed, routed, config.hidden, paddedHidden_,
                           DType::F32, "uploading the router weights");
  rule_ = config.router;
  if (!rule_.plain() && rule_.selectionBias != nullptr) {
    selectionBias_ = uploadMatrices({{rule_.selectionBias, DType::F32, QuantType::None}}, 1, 1, routed, routed,
                                    DType::F32, "uploading the router's selection bias");
    rule_.selectionBias = selectionBias_.as<float>();  // the route kernel reads it on the device
  }
  gateUp_ = uploadGateUp(gate, up, config.ffn, paddedFfn_, config.hidden, paddedHidden_, dtype_,
                         "uploading the gate/up weights");
  // Biases and gpt-oss's clamped SwiGLU: the CPU's separate activation and down-bias stages.
  std::vector<const float*> gateBiases, upBiases, downBiases;
  for (const ExpertSources& e : weights.experts) {
    gateBiases.push_back(e.gateBias);
    upBiases.push_back(e.upBias);
    downBiases.push_back(e.downBias);
  }
  const auto any = [](const std::vector<const float*>& v) {
    return std::any_of(v.begin(), v.end(), [](const float* p) { return p != nullptr; });
  };
  separateActivation_ =
      any(gateBiases) || any(upBiases) || config.activation != ExpertActivation::SwiGlu || config.weightOnInput;
  hasDownBias_ = any(downBiases);
  if (weights.routerBias != nullptr) {
    routerBias_ = uploadBiasRows({weights.routerBias}, routed, routed, "uploading the router bias");
  }
  if (any(gateBiases)) gateBias_ = uploadBiasRows(gateBiases, config.ffn, paddedFfn_, "uploading the gate biases");
  if (any(upBiases)) upBias_ = uploadBiasRows(upBiases, config.ffn, paddedFfn_, "uploading the up biases");
  if (hasDownBias_) downBias_ = uploadBiasRows(downBiases, config.hidden, paddedHidden_, "uploading the down biases");
  down_ = uploadMatrices(down, config.hidden, paddedHidden_, config.ffn, paddedFfn_, dtype_,
                         "uploading the down weights");
  if (shared != nullptr) {
    sharedGateUp_ = uploadGateUp({shared->weights.gate}, {shared->weights.up}, sharedFfn_, paddedSharedFfn_,
                                 config.hidden, paddedHidden_, dtype_, "uploading the shared expert");
    sharedDown_ = uploadMatrices({shared->weights.down}, config.hidden, paddedHidden_, sharedFfn_, paddedSharedFfn_,
                                 dtype_, "uploading the shared expert");
    if (sharedGated_) {
      sharedGate_ = uploadMatrices({{shared->gateWeight, DType::F32}}, 1, 1, config.hidden, paddedHidden_,
                                   DType::F32, "uploading the shared expert gate");
    }
  }
}

size_t DeviceMoeLayer::weightBytes() const {
  return router_.bytes() + selectionBias_.bytes() + gateUp_.bytes() + down_.bytes() + sharedGateUp_.bytes() +
         sharedDown_.bytes() + sharedGate_.bytes() + routerBias_.bytes() + gateBias_.bytes() + upBias_.bytes() +
         downBias_.bytes();
}

int DeviceMoeLayer::tokensPerPass(int tokens, int kMax) const {
  const size_t act = dtypeBytes(dtype_);
  size_t perRow = 12 + static_cast<size_t>(paddedFfn_) * act + static_cast<size_t>(paddedHidden_) * 4;
  if (separateActivation_) perRow += static_cast<size_t>(2) * paddedFfn_ * 4;  // GEMM 1's raw sums
  size_t perToken = static_cast<size_t>(kMax) * perRow + static_cast<size_t>(paddedHidden_) * (4 + act) +
                    static_cast<size_t>(config_.routedSlots()) * 12;
  if (sharedFfn_ > 0) perToken += static_cast<size_t>(paddedSharedFfn_) * act + paddedHidden_ * 4;
  if (sharedFfn_ > 0 && separateActivation_) perToken += static_cast<size_t>(2) * paddedSharedFfn_ * 4;
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>(tokens, kPassScratchBytes / perToken)));
}

void DeviceMoeLayer::runPass(const ForwardBuffers& io, int firstToken, int tokens, const RoutingPolicy& policy,
                             int pass, cudaStream_t stream, StageClock* clock) const {
  const int experts = config_.experts;
  const int routerColumns = config_.routedSlots();  // FFN and zero-computation experts
  const int kMax = io.kMax;
  const int hp = paddedHidden_;
  const DType dtype = dtype_;
  const size_t act = dtypeBytes(dtype);
  const bool decode = tokens <= kGemvMaxRows;
  const int expectedRows = static_cast<int>(static_cast<int64_t>(tokens) * std::min(kMax, 8) / experts);
  const int tileRows = decode || dtype == DType::F32 ? kSimtTileRows : mmaTileRows(expectedRows);
  const int slots = tokens * kMax;
  const int chunks = chunkCount(tokens);
  const int tiles = maxTiles(slots, experts, tileRows);
  const int sharedTiles = (tokens + tileRows - 1) / tileRows;

  ScratchLayout layout;
  const size_t xF32At = layout.add(static_cast<size_t>(tokens) * hp * 4);
  const size_t xActAt = dtype == DType::F32 ? xF32At : layout.add(static_cast<size_t>(tokens) * hp * act);
  const size_t logitsAt = io.routerLogits ? 0 : layout.add(static_cast<size_t>(tokens) * routerColumns * 4);
  const size_t chunkCountsAt = layout.add(static_cast<size_t>(chunks) * routerColumns * 4);
  const size_t chunkBaseAt = layout.add(static_cast<size_t>(chunks) * routerColumns * 4);
  const size_t offsetsAt = layout.add(static_cast<size_t>(experts + 1) * 4);
  const size_t rowTokenAt = layout.add(static_cast<size_t>(slots) * 4);
  const size_t rowWeightAt = layout.add(static_cast<size_t>(slots) * 4);
  const size_t slotRowAt = layout.add(static_cast<size_t>(slots) * 4);
  const size_t tileExpertAt = layout.add(static_cast<size_t>(tiles) * 4);
  const size_t tileRowStartAt = layout.add(static_cast<size_t>(tiles) * 4);
  const size_t tileCountAt = layout.add(4);
  const size_t intermediateAt = layout.add(static_cast<size_t>(slots) * paddedFfn_ * act);
  const size_t rowOutputAt = layout.add(static_cast<size_t>(slots) * hp * 4);
  size_t sharedIntermediateAt = 0;
  size_t sharedOutputAt = 0;
  if (sharedFfn_ > 0) {
    sharedIntermediateAt = layout.add(static_cast<size_t>(tokens) * paddedSharedFfn_ * act);
    sharedOutputAt = layout.add(static_cast<size_t>(tokens) * hp * 4);
  }
  // Raw gate/up sums of GEMM 1 when the activation is a stage of its own (biases, gpt-oss's clamped SwiGLU).
  const size_t rawAt = separateActivation_ ? layout.add(static_cast<size_t>(slots) * 2 * paddedFfn_ * 4) : 0;
  const size_t sharedRawAt =
      separateActivation_ && sharedFfn_ > 0 ? layout.add(static_cast<size_t>(tokens) * 2 * paddedSharedFfn_ * 4) : 0;
  StreamBuffer scratch(layout.bytes(), stream, "allocating the forward's GPU scratch");
  float* xF32 = at<float>(scratch, xF32At);
  void* xAct = at<void>(scratch, xActAt);
  int32_t* passLoad = io.passLoads + static_cast<size_t>(pass) * routerColumns;
  float* routerLogits =
      io.routerLogits ? io.routerLogits + static_cast<size_t>(firstToken) * routerColumns : at<float>(scratch, logitsAt);
  const int32_t* ids = io.ids + static_cast<size_t>(firstToken) * kMax;
  const float* weights = io.weights + static_cast<size_t>(firstToken) * kMax;
  const int32_t* counts = io.counts + firstToken;

  if (clock) clock->mark(stream);
  {
    NvtxRange range("moe/route", tokens);
    // A model's buffer is already padded (xStride == hp, zeros past hidden): its whole rows are copied.
    launchConvertInput(io.x + static_cast<size_t>(firstToken) * io.xStride, tokens, io.xStride, hp, xF32,
                       dtype == DType::F32 ? nullptr : xAct, dtype, stream);
    GroupedGemm logits;
    logits.dtype = DType::F32;
    logits.weights = router_.as<void>();
    logits.n = routerColumns;
    logits.k = hp;
    logits.input = xF32;
    logits.inputStride = hp;
    logits.rows = tokens;
    logits.maxTiles = (tokens + kSimtTileRows - 1) / kSimtTileRows;
    logits.tileRows = kSimtTileRows;
    logits.output = routerLogits;
    logits.outputStride = routerColumns;
    logits.multiprocessors = multiprocessors_;
    runGemm(logits, 1, Epilogue::Scaled, decode, stream);
    if (routerBias_.bytes() > 0) launchAddRouterBias(routerLogits, tokens, routerColumns, routerBias_.as<float>(), stream);

    checkCuda(cudaMemsetAsync(at<int32_t>(scratch, chunkCountsAt), 0, static_cast<size_t>(chunks) * routerColumns * 4,
                              stream),
              "clearing the routing counts");
    RouteLaunch route;
    route.scores = routerLogits;
    route.scoreStride = routerColumns;
    route.tokens = tokens;
    route.experts = routerColumns;
    route.logits = true;
    route.policy = policy;
    route.kMax = kMax;
    route.ids = io.ids + static_cast<size_t>(firstToken) * kMax;
    route.weights = io.weights + static_cast<size_t>(firstToken) * kMax;
    route.counts = io.counts + firstToken;
    route.expertLoad = passLoad;
    route.chunkCounts = at<int32_t>(scratch, chunkCountsAt);
    route.firstInvalidToken = io.firstInvalidToken;
    // A family's rule routes one token per thread through the core's selection, with scratch of its own.
    std::unique_ptr<StreamBuffer> ruleScratch;
    if (!rule_.plain()) {
      ruleScratch = std::make_unique<StreamBuffer>(static_cast<size_t>(tokens) * 4 * routerColumns * 4, stream,
                                                   "allocating the router rule's scratch");
      route.rule = rule_;
      route.ruleScratch = ruleScratch->as<void>();
    }
    if (io.segmentPolicies != nullptr) {
      route.segmentPolicies = io.segmentPolicies;
      route.tokenSegments = io.tokenSegments + firstToken;
    }
    launchRoute(route, stream);
  }
  if (clock) clock->mark(stream);
  PlanLaunch plan;
  {
    NvtxRange range("moe/plan", tokens);
    plan.tokens = tokens;
    plan.experts = experts;
    plan.countStride = routerColumns;
    plan.kMax = kMax;
    plan.tileRows = tileRows;
    plan.ids = ids;
    plan.weights = weights;
    plan.counts = counts;
    plan.expertLoad = passLoad;
    plan.chunkCounts = at<int32_t>(scratch, chunkCountsAt);
    plan.chunkBase = at<int32_t>(scratch, chunkBaseAt);
    plan.out.expertOffsets = at<int32_t>(scratch, offsetsAt);
    plan.out.rowToken = at<int32_t>(scratch, rowTokenAt);
    plan.out.rowWeight = at<float>(scratch, rowWeightAt);
    plan.out.slotRow = at<int32_t>(scratch, slotRowAt);
    plan.tileExpert = at<int32_t>(scratch, tileExpertAt);
    plan.tileRowStart = at<int32_t>(scratch, tileRowStartAt);
    plan.tileCount = at<int32_t>(scratch, tileCountAt);
    launchPlan(plan, stream);
  }
  if (clock) clock->mark(stream);

  // Routed experts: rows grouped by the plan. The shared expert: every token, as one dense group.
  GroupedGemm routed;
  routed.dtype = dtype;
  routed.groupOffsets = plan.out.expertOffsets;
  routed.tileGroup = plan.tileExpert;
  routed.tileRowStart = plan.tileRowStart;
  routed.tileCount = plan.tileCount;
  routed.maxTiles = tiles;
  routed.tileRows = tileRows;
  routed.multiprocessors = multiprocessors_;
  GroupedGemm shared = routed;
  shared.groupOffsets = nullptr;
  shared.tileGroup = nullptr;
  shared.tileRowStart = nullptr;
  shared.tileCount = nullptr;
  shared.rows = tokens;
  shared.maxTiles = sharedTiles;
  {
    NvtxRange range("moe/gemm1_swiglu", tokens);
    GroupedGemm gemm1 = routed;
    gemm1.weights = gateUp_.as<void>();
    setWeights(&gemm1, gateUpQuant_, dtype, 2 * paddedFfn_, hp);
    gemm1.n = 2 * paddedFfn_;
    gemm1.k = hp;
    gemm1.input = xAct;
    gemm1.inputStride = hp;
    gemm1.rowToken = plan.out.rowToken;
    gemm1.output = at<void>(scratch, intermediateAt);
    gemm1.outputStride = paddedFfn_;
    gemm1.rowsComputed = io.gateUpRows;
    ActivateLaunch activate;
    activate.paddedFfn = paddedFfn_;
    activate.activation = config_.activation;
    activate.limit = config_.activationLimit;
    activate.alpha = config_.activationAlpha;
    activate.dtype = dtype;
    if (separateActivation_) {
      // Raw sums, then the biases and the activation into the intermediate rows (the CPU's order).
      gemm1.output = at<float>(scratch, rawAt);
      gemm1.outputStride = 2 * paddedFfn_;
      runGemm(gemm1, experts, Epilogue::Scaled, decode, stream);
      activate.raw = at<float>(scratch, rawAt);
      activate.rawStride = static_cast<size_t>(2) * paddedFfn_;
      activate.rows = slots;
      activate.expertOffsets = plan.out.expertOffsets;
      activate.experts = experts;
      activate.gateBias = gateBias_.bytes() > 0 ? gateBias_.as<float>() : nullptr;
      activate.upBias = upBias_.bytes() > 0 ? upBias_.as<float>() : nullptr;
      activate.inputWeight = config_.weightOnInput ? plan.out.rowWeight : nullptr;
      activate.out = at<void>(scratch, intermediateAt);
      activate.outStride = paddedFfn_;
      launchActivate(activate, stream);
    } else {
      runGemm(gemm1, experts, Epilogue::SwiGlu, decode, stream);
    }
    if (sharedFfn_ > 0) {
      GroupedGemm sharedGemm1 = shared;
      sharedGemm1.weights = sharedGateUp_.as<void>();
      setWeights(&sharedGemm1, sharedGateUpQuant_, dtype, 2 * paddedSharedFfn_, hp);
      sharedGemm1.n = 2 * paddedSharedFfn_;
      sharedGemm1.k = hp;
      sharedGemm1.input = xAct;
      sharedGemm1.inputStride = hp;
      sharedGemm1.output = at<void>(scratch, sharedIntermediateAt);
      sharedGemm1.outputStride = paddedSharedFfn_;
      if (separateActivation_) {
        // The shared expert has no biases; it takes the layer's activation.
        sharedGemm1.output = at<float>(scratch, sharedRawAt);
        sharedGemm1.outputStride = 2 * paddedSharedFfn_;
        runGemm(sharedGemm1, 1, Epilogue::Scaled, decode, stream);
        ActivateLaunch sharedActivate = activate;
        sharedActivate.raw = at<float>(scratch, sharedRawAt);
        sharedActivate.rawStride = static_cast<size_t>(2) * paddedSharedFfn_;
        sharedActivate.rows = tokens;
        sharedActivate.paddedFfn = paddedSharedFfn_;
        sharedActivate.expertOffsets = nullptr;
        sharedActivate.gateBias = nullptr;
        sharedActivate.upBias = nullptr;
        sharedActivate.inputWeight = nullptr;
        sharedActivate.out = at<void>(scratch, sharedIntermediateAt);
        sharedActivate.outStride = paddedSharedFfn_;
        launchActivate(sharedActivate, stream);
      } else {
        runGemm(sharedGemm1, 1, Epilogue::SwiGlu, decode, stream);
      }
    }
  }
  if (clock) clock->mark(stream);
  {
    NvtxRange range("moe/gemm2", tokens);
    GroupedGemm gemm2 = routed;
    gemm2.weights = down_.as<void>();
    setWeights(&gemm2, downQuant_, dtype, hp, paddedFfn_);
    gemm2.n = hp;
    gemm2.k = paddedFfn_;
    gemm2.input = at<void>(scratch, intermediateAt);
    gemm2.inputStride = paddedFfn_;
    // Llama 4's weights already scaled the routed rows' activations.
    gemm2.rowScale = config_.weightOnInput ? nullptr : plan.out.rowWeight;
    gemm2.output = at<float>(scratch, rowOutputAt);
    gemm2.outputStride = hp;
    gemm2.rowsComputed = io.downRows;
    runGemm(gemm2, experts, Epilogue::Scaled, decode, stream);
    if (hasDownBias_) {
      DownBiasLaunch bias;
      bias.rowOutput = at<float>(scratch, rowOutputAt);
      bias.outputStride = hp;
      bias.maxRows = slots;
      bias.hidden = config_.hidden;
      bias.expertOffsets = plan.out.expertOffsets;
      bias.experts = experts;
      bias.rowWeight = plan.out.rowWeight;
      bias.downBias = downBias_.as<float>();
      bias.biasStride = hp;
      launchAddDownBias(bias, stream);
    }
    if (sharedFfn_ > 0) {
      GroupedGemm sharedGemm2 = shared;
      sharedGemm2.weights = sharedDown_.as<void>();
      setWeights(&sharedGemm2, sharedDownQuant_, dtype, hp, paddedSharedFfn_);
      sharedGemm2.n = hp;
      sharedGemm2.k = paddedSharedFfn_;
      sharedGemm2.input = at<void>(scratch, sharedIntermediateAt);
      sharedGemm2.inputStride = paddedSharedFfn_;
      sharedGemm2.output = at<float>(scratch, sharedOutputAt);
      sharedGemm2.outputStride = hp;
      runGemm(sharedGemm2, 1, Epilogue::Scaled, decode, stream);
    }
  }
  if (clock) clock->mark(stream);
  {
    NvtxRange range("moe/finalize", tokens);
    FinalizeLaunch finalize;
    finalize.tokens = tokens;
    finalize.hidden = config_.hidden;
    finalize.paddedHidden = hp;
    finalize.kMax = kMax;
    finalize.counts = counts;
    finalize.slotRow = plan.out.slotRow;
    finalize.rowOutput = at<float>(scratch, rowOutputAt);
    if (sharedFfn_ > 0) finalize.sharedOutput = at<float>(scratch, sharedOutputAt);
    if (sharedGated_) finalize.sharedGateWeight = sharedGate_.as<float>();
    finalize.xF32 = xF32;
    if (config_.zeroExperts > 0) {
      finalize.ids = ids;
      finalize.slotWeights = weights;
      finalize.experts = experts;
      finalize.identityExperts = config_.zeroKind == ZeroExpertKind::Identity;
    }
    finalize.out = io.out + static_cast<size_t>(firstToken) * io.outStride;
    finalize.outStride = io.outStride;
    launchFinalize(finalize, stream);
  }
  if (clock) clock->mark(stream);
}

void DeviceMoeLayer::run(const float* x, int tokens, const RoutingPolicy& policy, float* out,
                         const RoutingOutput& routing, const WorkCounters& work, StageClock* clock) const {
  const int hidden = config_.hidden;
  const int experts = config_.experts;
  const int routed = config_.routedSlots();
  checkFinite(x, tokens, hidden, hidden, "x", "feature");
  const int kMax = routing.kMax;
  const int passTokens = tokensPerPass(tokens, kMax);
  const int passes = (tokens + passTokens - 1) / passTokens;
  const size_t activations = static_cast<size_t>(tokens) * hidden;
  const size_t slots = static_cast<size_t>(tokens) * kMax;

  NvtxRange range(layerId_, tokens, experts);
  OwnedStream stream;
  ScratchLayout layout;
  const size_t xAt = layout.add(activations * 4);
  const size_t outAt = layout.add(activations * 4);
  const size_t idsAt = layout.add(slots * 4);
  const size_t weightsAt = layout.add(slots * 4);
  const size_t countsAt = layout.add(static_cast<size_t>(tokens) * 4);
  const size_t loadsAt = layout.add(static_cast<size_t>(passes) * routed * 4);
  const size_t countersAt = layout.add(static_cast<size_t>(2) * experts * 4);  // gate/up rows, then down rows
  const size_t invalidAt = layout.add(4);
  StreamBuffer buffers(layout.bytes(), stream.get(), "allocating the forward's GPU buffers");
  ForwardBuffers io;
  io.kMax = kMax;
  io.x = at<float>(buffers, xAt);
  io.xStride = hidden;
  io.out = at<float>(buffers, outAt);
  io.outStride = hidden;
  io.ids = at<int32_t>(buffers, idsAt);
  io.weights = at<float>(buffers, weightsAt);
  io.counts = at<int32_t>(buffers, countsAt);
  io.passLoads = at<int32_t>(buffers, loadsAt);
  io.gateUpRows = at<int32_t>(buffers, countersAt);
  io.downRows = io.gateUpRows + experts;
  io.firstInvalidToken = at<int32_t>(buffers, invalidAt);

  const int32_t noInvalidToken = INT_MAX;
  checkCuda(cudaMemcpyAsync(const_cast<float*>(io.x), x, activations * 4, cudaMemcpyHostToDevice, stream.get()),
            "copying x to the GPU");
  checkCuda(cudaMemcpyAsync(io.firstInvalidToken, &noInvalidToken, 4, cudaMemcpyHostToDevice, stream.get()),
            "copying to the GPU");
  checkCuda(cudaMemsetAsync(io.passLoads, 0, static_cast<size_t>(passes) * routed * 4, stream.get()),
            "clearing the expert loads");
  checkCuda(cudaMemsetAsync(io.gateUpRows, 0, static_cast<size_t>(2) * experts * 4, stream.get()),
            "clearing the work counters");
  for (int pass = 0; pass < passes; ++pass) {
    const int first = pass * passTokens;
    runPass(io, first, std::min(passTokens, tokens - first), policy, pass, stream.get(), clock);
  }

  std::vector<int32_t> passLoads(static_cast<size_t>(passes) * routed);
  std::vector<int32_t> counters(static_cast<size_t>(2) * experts);
  int32_t firstInvalidToken = 0;
  const auto copyBack = [&](void* host, const void* device, size_t bytes) {
    checkCuda(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream.get()), "copying results back");
  };
  copyBack(out, io.out, activations * 4);
  copyBack(routing.ids, io.ids, slots * 4);
  copyBack(routing.weights, io.weights, slots * 4);
  copyBack(routing.counts, io.counts, static_cast<size_t>(tokens) * 4);
  copyBack(passLoads.data(), io.passLoads, passLoads.size() * 4);
  copyBack(counters.data(), io.gateUpRows, counters.size() * 4);
  copyBack(&firstInvalidToken, io.firstInvalidToken, 4);
  stream.synchronize("the MoE forward on the GPU");

  if (firstInvalidToken != INT_MAX) {
    throw Error(code::kValue, "router logits (x . router weights) must be finite, found a NaN or infinity at token " +
                                  std::to_string(firstInvalidToken));
  }
  for (int e = 0; e < routed; ++e) {
    int32_t load = 0;
    for (int pass = 0; pass < passes; ++pass) load += passLoads[static_cast<size_t>(pass) * routed + e];
    routing.expertLoad[e] = load;
  }
  for (int e = 0; e < experts; ++e) {
    if (work.gateUpRows) work.gateUpRows[e] = counters[e];
    if (work.downRows) work.downRows[e] = counters[experts + e];
  }
}

void DeviceMoeLayer::enqueue(const DeviceMoeCall& call, StepArena& arena) const {
  const int experts = config_.experts;
  if (call.xStride != paddedHidden_ && call.xStride != config_.hidden) {
    throw Error(code::kInternal, "a device MoE call reads rows of hidden or padded hidden columns");
  }
  const int passTokens = tokensPerPass(call.tokens, call.kMax);
  const int passes = (call.tokens + passTokens - 1) / passTokens;
  ForwardBuffers io;
  io.kMax = call.kMax;
  io.x = call.x;
  io.xStride = call.xStride;
  io.out = call.out;
  io.outStride = call.outStride;
  io.routerLogits = call.routerLogits;
  io.segmentPolicies = call.segmentPolicies;
  io.tokenSegments = call.tokenSegments;
  io.ids = call.ids;
  io.weights = call.weights;
  io.counts = call.counts;
  io.passLoads = arena.take<int32_t>(static_cast<size_t>(passes) * config_.routedSlots(), "the MoE expert loads");
  io.gateUpRows = arena.take<int32_t>(static_cast<size_t>(2) * experts, "the MoE work counters");
  io.downRows = io.gateUpRows + experts;
  io.firstInvalidToken = call.firstInvalidToken;
  checkCuda(cudaMemsetAsync(io.passLoads, 0, static_cast<size_t>(passes) * config_.routedSlots() * 4, call.stream),
            "clearing the expert loads");
  checkCuda(cudaMemsetAsync(io.gateUpRows, 0, static_cast<size_t>(2) * experts * 4, call.stream),
            "clearing the work counters");
  for (int pass = 0; pass < passes; ++pass) {
    const int first = pass * passTokens;
    runPass(io, first, std::min(passTokens, call.tokens - first), call.policy, pass, call.stream, nullptr);
  }
}

void DeviceMoeLayer::forward(const MoeForward& call) const {
  const size_t hidden = static_cast<size_t>(config_.hidden);
  if (call.xStride != hidden || call.outStride != hidden) {
    throw Error(code::kUnsupported, "a CUDA MoE layer reads and writes contiguous rows (stride = hidden)");
  }
  if (call.stats != nullptr) throw Error(code::kUnsupported, "router statistics are not computed on device 'cuda' yet");
  if (call.ranges != nullptr) {
    throw Error(code::kUnsupported, "per-row-range routing policies are not run on device 'cuda' yet");
  }
  run(call.x, call.tokens, *call.policy, call.out, call.routing, call.work, nullptr);
}

StageTimes DeviceMoeLayer::profile(const float* x, int tokens, const RoutingPolicy& policy, int runs) const {
  const int kMax = policy.kMax(config_.routedSlots());
  std::vector<float> out(static_cast<size_t>(tokens) * config_.hidden);
  std::vector<int32_t> ids(static_cast<size_t>(tokens) * kMax);
  std::vector<float> weights(ids.size());
  std::vector<int32_t> counts(tokens);
  std::vector<int32_t> load(config_.routedSlots());
  const RoutingOutput routing{kMax, ids.data(), weights.data(), counts.data(), load.data()};
  run(x, tokens, policy, out.data(), routing, {}, nullptr);  // warm-up: pool memory, module loading, caches
  StageTimes times;
  for (int r = 0; r < runs; ++r) {
    StageClock clock;
    run(x, tokens, policy, out.data(), routing, {}, &clock);
    clock.addTo(times);
  }
  for (double* value : {&times.routeUs, &times.planUs, &times.gemm1Us, &times.gemm2Us, &times.finalizeUs,
                        &times.totalUs}) {
    *value /= runs;
  }
  times.runs = runs;
  return times;
}

std::shared_ptr<const MoeLayer> uploadMoeLayer(const MoeWeights& weights) {
  return std::make_shared<const DeviceMoeLayer>(weights);
}

}  // namespace dynamoe::cuda
