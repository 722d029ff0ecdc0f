// Leak check of the native CPU objects the addon is made of, without Node (whose own allocations would drown the
// report): thread pools, MoE layers packed from f32 / f16 / bf16 sources (with a gated shared expert), a model graph
// with every op kind (tied and untied heads), KV caches, routing, router losses and statistics; forwards in every
// kernel family this CPU runs, and the error paths (exceptions from pool items, bad token ids, full caches, NaN x).
// Built with ASan; LeakSanitizer reports anything unreachable at exit, and the live heap must stay flat across
// iterations (catches growth that is still reachable). Usage: leak_check [iterations]
#include <sanitizer/allocator_interface.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../../native/cpu/cpu_features.h"
#include "../../native/cpu/graph_ops.h"
#include "../../native/cpu/model_graph.h"
#include "../../native/cpu/moe_layer.h"
#include "../../native/cpu/router_losses.h"
#include "../../native/cpu/router_stats.h"
#include "../../native/cpu/routing.h"
#include "../../native/cpu/tile_kernels.h"
#include "../../native/errors.h"
#include "../../native/thread_pool.h"

using namespace dynamoe;
using namespace dynamoe::cpu;

namespace {

// Live heap bytes the main thread's thread_local GEMM / attention scratch may still grow by after the warm-up
// iterations (which pool thread takes which item varies).
constexpr size_t kGrowthSlackBytes = 256 * 1024;

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "leak_check: FAILED: %s\n", message.c_str());
  std::exit(1);
}

void require(bool condition, const std::string& what) {
  if (!condition) fail(what);
}

// Runs `body` and requires it to throw dynamoe::Error with `code`.
template <typename Body>
void requireError(const char* code, const std::string& what, Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    require(std::string(e.code()) == code, what + ": threw " + e.code() + " instead of " + code);
    return;
  }
  fail(what + ": did not throw");
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  float uniform(float scale) {  // in [-scale, scale)
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return scale * (static_cast<float>(state_ >> 40) / static_cast<float>(1ull << 23) - 1.0f);
  }
  std::vector<float> floats(size_t n, float scale) {
    std::vector<float> out(n);
    for (float& v : out) v = uniform(scale);
    return out;
  }

 private:
  uint64_t state_;
};

// A weight matrix held in the element type a JS caller would pass (Float32Array, or Uint16Array bit patterns).
struct SourceMatrix {
  DType dtype = DType::F32;
  std::vector<float> f32;
  std::vector<uint16_t> bits;

  SourceMatrix(Rng& rng, size_t elements, DType sourceDtype, float scale) : dtype(sourceDtype) {
    f32 = rng.floats(elements, scale);
    if (dtype == DType::F32) return;
    for (float v : f32) bits.push_back(dtype == DType::F16 ? f32ToF16(v) : f32ToBf16(v));
    f32.clear();
  }
  MatrixSource source() const {
    return {dtype == DType::F32 ? static_cast<const void*>(f32.data()) : static_cast<const void*>(bits.data()), dtype};
  }
};

struct ExpertMatrices {
  SourceMatrix gate, up, down;
  ExpertMatrices(Rng& rng, int ffn, int hidden, DType dtype)
      : gate(rng, static_cast<size_t>(ffn) * hidden, dtype, 0.2f),
        up(rng, static_cast<size_t>(ffn) * hidden, dtype, 0.2f),
        down(rng, static_cast<size_t>(hidden) * ffn, dtype, 0.2f) {}
  ExpertSources sources() const { return {gate.source(), up.source(), down.source()}; }
};

constexpr int kHidden = 32, kFfn = 24, kExperts = 4, kSharedFfn = 40;

// The sources only live during construction, as with the JS arrays a packing worker reads.
std::shared_ptr<const MoeLayer> makeMoeLayer(Rng& rng, DType target, DType source, bool withShared) {
  const MoeLayerConfig config{kHidden, kFfn, kExperts, target};
  const std::vector<float> router = rng.floats(static_cast<size_t>(kExperts) * kHidden, 1.0f);
  std::vector<ExpertMatrices> matrices;
  std::vector<ExpertSources> experts;
  for (int e = 0; e < kExperts; ++e) matrices.emplace_back(rng, kFfn, kHidden, source);
  for (const ExpertMatrices& m : matrices) experts.push_back(m.sources());
  const ExpertMatrices sharedMatrices(rng, kSharedFfn, kHidden, source);
  const std::vector<float> sharedGate = rng.floats(kHidden, 0.5f);
  const SharedExpertSources shared{kSharedFfn, sharedMatrices.sources(), sharedGate.data()};
  return std::make_shared<const MoeLayer>(config, router.data(), experts, withShared ? &shared : nullptr);
}

std::vector<RoutingPolicy> somePolicies() {
  RoutingPolicy topK;
  topK.kind = PolicyKind::TopK;
  topK.k = 2;
  topK.normalize = true;
  RoutingPolicy topP;
  topP.kind = PolicyKind::TopP;
  topP.p = 0.5f;
  topP.minExperts = 1;
  topP.maxExperts = 3;
  RoutingPolicy threshold;
  threshold.kind = PolicyKind::Threshold;
  threshold.tau = 0.1f;
  for (const RoutingPolicy& policy : {topK, topP, threshold}) validatePolicy(policy, kExperts);
  return {topK, topP, threshold};
}

bool allFinite(const float* values, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) return false;
  }
  return true;
}

// One MoE forward with its caller-owned outputs, as ForwardWorker (native/moe_layer_binding.cpp) runs it.
void moeForward(const MoeLayer& layer, const std::vector<float>& x, int tokens, const RoutingPolicy& policy) {
  const int kMax = policy.kMax(kExperts);
  std::vector<float> out(x.size());
  std::vector<int32_t> ids(static_cast<size_t>(tokens) * kMax), counts(tokens), load(kExperts);
  std::vector<float> weights(ids.size());
  std::vector<int32_t> gateUpRows(kExperts), downRows(kExperts);
  std::vector<double> probabilitySum(kExperts, 0.0);
  double entropySum = 0.0;
  const RoutingOutput routing{kMax, ids.data(), weights.data(), counts.data(), load.data()};
  const RouterStatsSums stats{probabilitySum.data(), &entropySum};
  layer.forward(x.data(), kHidden, tokens, policy, out.data(), kHidden, routing, {gateUpRows.data(), downRows.data()},
                &stats);
  require(allFinite(out.data(), out.size()), "MoE forward output is not finite");
}

void exerciseMoeLayers(Rng& rng) {
  const std::vector<RoutingPolicy> policies = somePolicies();
  const int tokens = 70;  // more than one parallel item of routing and combine
  const std::vector<float> x = rng.floats(static_cast<size_t>(tokens) * kHidden, 1.0f);
  struct Variant {
    DType target, source;
    bool shared;
  };
  for (const Variant v : {Variant{DType::F32, DType::F32, true}, Variant{DType::F16, DType::F16, true},
                          Variant{DType::BF16, DType::F32, false}, Variant{DType::BF16, DType::BF16, true}}) {
    const std::shared_ptr<const MoeLayer> layer = makeMoeLayer(rng, v.target, v.source, v.shared);
    require(layer->weightBytes() > 0, "MoE layer has no weights");
    for (const RoutingPolicy& policy : policies) moeForward(*layer, x, tokens, policy);
    std::vector<float> bad = x;
    bad[5 * kHidden + 3] = NAN;
    requireError(code::kValue, "MoE forward with NaN x", [&] { moeForward(*layer, bad, tokens, policies[0]); });
  }
}

void exerciseRoutingAndLosses(Rng& rng) {
  const int tokens = 150, experts = 9;
  const std::vector<float> logits = rng.floats(static_cast<size_t>(tokens) * experts, 4.0f);
  RoutingPolicy policy;
  policy.kind = PolicyKind::TopP;
  policy.p = 0.7f;
  validatePolicy(policy, experts);
  const int kMax = policy.kMax(experts);
  std::vector<int32_t> ids(static_cast<size_t>(tokens) * kMax), counts(tokens), load(experts);
  std::vector<float> weights(ids.size());
  routeTokens(logits.data(), experts, tokens, experts, RouterInput::Logits, policy,
              {kMax, ids.data(), weights.data(), counts.data(), load.data()});

  std::vector<double> fraction(experts), meanProbability(experts);
  std::vector<int32_t> lossCounts(tokens);
  std::vector<float> dynamicGradient(logits.size()), balanceGradient(logits.size());
  const RouterLossOutput out{fraction.data(), meanProbability.data(), lossCounts.data(), dynamicGradient.data(),
                             balanceGradient.data()};
  const RouterLossValues values = computeRouterLosses(logits.data(), tokens, experts, policy, out);
  require(std::isfinite(values.dynamicLoss) && std::isfinite(values.loadBalanceLoss), "router losses not finite");
  require(lossCounts == counts, "router losses selected other experts than routeTokens");

  std::vector<double> probabilitySum(experts, 0.0);
  double entropySum = 0.0;
  accumulateRouterStats(logits.data(), experts, tokens, experts, probabilitySum.data(), &entropySum);
}

// A two-layer model over seven activation buffers, with every op the graph reader can build: embedding,
// RMSNorm (row and per head), linear (with and without bias), RoPE (both styles), attention, add, MoE, dense MLP and
// a tied or untied LM head.
constexpr int kVocab = 50, kHeads = 4, kKvHeads = 2, kHeadDim = 8;
constexpr int kKvWidth = kKvHeads * kHeadDim;
enum Buffer { kResidual, kNormed, kQuery, kKey, kValue, kAttention, kBranch };

std::shared_ptr<const PackedMatrix> packedLinear(Rng& rng, int out, int in, DType dtype) {
  const SourceMatrix weights(rng, static_cast<size_t>(out) * in, DType::F32, 0.3f);
  return std::make_shared<const PackedMatrix>(packColumns(weights.source(), out, in, dtype));
}

std::unique_ptr<ModelGraph> buildModel(Rng& rng, DType dtype, bool tiedHead) {
  GraphLayout layout;
  layout.bufferWidths = {kHidden, kHidden, kHeads * kHeadDim, kKvWidth, kKvWidth, kHeads * kHeadDim, kHidden};
  layout.vocab = kVocab;
  layout.kvWidths = {kKvWidth, kKvWidth};
  layout.moeExperts = {kExperts};
  auto graph = std::make_unique<ModelGraph>(layout);

  const std::shared_ptr<const PackedMatrix> table = packedLinear(rng, kVocab, kHidden, dtype);
  graph->append(makeEmbeddingOp(table, kVocab, kHidden, kResidual));
  for (int layer = 0; layer < 2; ++layer) {
    graph->append(makeRmsNormOp(kResidual, kNormed, kHidden, kHidden, rng.floats(kHidden, 1.0f), 1e-6f));
    graph->append(makeLinearOp(kNormed, kQuery, packedLinear(rng, kHeads * kHeadDim, kHidden, dtype),
                               kHeads * kHeadDim, rng.floats(kHeads * kHeadDim, 0.1f)));
    graph->append(makeLinearOp(kNormed, kKey, packedLinear(rng, kKvWidth, kHidden, dtype), kKvWidth, {}));
    graph->append(makeLinearOp(kNormed, kValue, packedLinear(rng, kKvWidth, kHidden, dtype), kKvWidth, {}));
    graph->append(makeRmsNormOp(kQuery, kQuery, kHeads * kHeadDim, kHeadDim, rng.floats(kHeadDim, 1.0f), 1e-6f));
    const RopeStyle style = layer == 0 ? RopeStyle::Halves : RopeStyle::Pairs;
    graph->append(makeRopeOp(kQuery, kHeads, kHeadDim, 10000.0, style));
    graph->append(makeRopeOp(kKey, kKvHeads, kHeadDim, 10000.0, style));
    AttentionShape shape;
    shape.query = kQuery;
    shape.key = kKey;
    shape.value = kValue;
    shape.output = kAttention;
    shape.heads = kHeads;
    shape.kvHeads = kKvHeads;
    shape.headDim = kHeadDim;
    shape.slot = layer;
    graph->append(makeAttentionOp(shape));
    graph->append(makeLinearOp(kAttention, kBranch, packedLinear(rng, kHidden, kHeads * kHeadDim, dtype), kHidden, {}));
    graph->append(makeAddOp(kResidual, kBranch, kResidual, kHidden));
    graph->append(makeRmsNormOp(kResidual, kNormed, kHidden, kHidden, rng.floats(kHidden, 1.0f), 1e-6f));
    if (layer == 0) {
      graph->append(makeMoeOp(kNormed, kBranch, 0, makeMoeLayer(rng, dtype, dtype, true)));
    } else {
      const ExpertMatrices mlp(rng, kFfn, kHidden, DType::F32);
      graph->append(makeDenseMlpOp(kNormed, kBranch, packGateUp(mlp.gate.source(), mlp.up.source(), kFfn, kHidden, dtype),
                                   packColumns(mlp.down.source(), kHidden, kFfn, dtype)));
    }
    graph->append(makeAddOp(kResidual, kBranch, kResidual, kHidden));
  }
  graph->append(makeRmsNormOp(kResidual, kNormed, kHidden, kHidden, rng.floats(kHidden, 1.0f), 1e-6f));
  graph->append(tiedHead ? makeLogitsOp(kNormed, table, kVocab, false)
                         : makeLogitsOp(kNormed, packedLinear(rng, kVocab, kHidden, dtype), kVocab, true));
  require(graph->weightBytes() > 0, "model has no weights");
  return graph;
}

// What ForwardWorker (native/model_graph_binding.cpp) does for one step, with statistics.
void step(const ModelGraph& graph, KvCache& cache, const std::vector<int32_t>& tokens, const RoutingPolicy& policy,
          bool lastRowLogits) {
  const int count = static_cast<int>(tokens.size());
  std::vector<float> logits(static_cast<size_t>(lastRowLogits ? 1 : count) * kVocab);
  std::vector<int32_t> counts(count), load(kExperts);
  std::vector<double> probabilitySum(kExperts, 0.0), entropySum(1, 0.0);
  MoeStepStats stats;
  stats.counts = counts.data();
  stats.expertLoad = load.data();
  stats.sums = {probabilitySum.data(), entropySum.data()};
  StepRequest request;
  request.tokenIds = tokens.data();
  request.tokens = count;
  request.cache = &cache;
  request.policies = &policy;
  request.moeStats = &stats;
  request.logits = logits.data();
  request.lastRowLogits = lastRowLogits;
  graph.forward(request);
  require(allFinite(logits.data(), logits.size()), "model logits are not finite");
}

void exerciseModels(Rng& rng) {
  const std::vector<RoutingPolicy> policies = somePolicies();
  for (const DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (const bool tied : {true, false}) {
      const std::unique_ptr<ModelGraph> graph = buildModel(rng, dtype, tied);
      const RoutingPolicy& policy = policies[static_cast<size_t>(dtype) % policies.size()];
      // Sequences take step scratch from the model's pool and give it back when they go (ScratchPool).
      const auto pool = std::make_shared<ScratchPool>();
      auto cache = std::make_unique<KvCache>(graph->layout().kvWidths, 16, pool);
      step(*graph, *cache, {1, 7, 49, 0, 23}, policy, false);  // prefill
      for (int32_t token : {3, 14, 15}) step(*graph, *cache, {token}, policy, true);  // decode
      require(cache->length() == 8, "the cache did not keep the committed positions");
      requireError(code::kValue, "token id outside the vocabulary", [&] { step(*graph, *cache, {2, kVocab}, policy, false); });
      requireError(code::kShape, "step past the context", [&] { step(*graph, *cache, std::vector<int32_t>(9, 1), policy, false); });
      require(cache->length() == 8, "a failed step changed the cache length");
      cache->reset();
      step(*graph, *cache, {4, 4}, policy, false);

      // Scoring: log-probabilities of next tokens (-1: none) on a cache sized to the step, as forward(null, ...).
      const std::vector<int32_t> tokens = {5, 6, 7, 8, 9};
      const std::vector<int32_t> targets = {6, 7, -1, 9, 0};
      std::vector<double> logProbs(tokens.size());
      KvCache scratch(graph->layout().kvWidths, static_cast<int>(tokens.size()), pool);
      StepRequest request;
      request.tokenIds = tokens.data();
      request.tokens = static_cast<int>(tokens.size());
      request.cache = &scratch;
      request.policies = &policy;
      request.targets = targets.data();
      request.targetLogProbs = logProbs.data();
      graph->forward(request);
      require(std::isnan(logProbs[2]) && logProbs[0] <= 0.0 && std::isfinite(logProbs[4]), "scores are wrong");

      // A new sequence on the scratch the first one gave back; then the model goes (dispose closes the pool).
      cache.reset();
      cache = std::make_unique<KvCache>(graph->layout().kvWidths, 16, pool);
      step(*graph, *cache, {7, 1}, policy, false);
      pool->close();
    }
  }
}

void exerciseThreadPools() {
  ThreadPool pool(3);
  std::vector<int> hits(100, 0);
  pool.parallelFor(hits.size(), [&](size_t i) { hits[i]++; });
  requireError(code::kInternal, "an exception from a pool item", [&] {
    pool.parallelFor(50, [](size_t i) {
      if (i % 7 == 3) throw Error(code::kInternal, "item " + std::to_string(i));
    });
  });
  pool.resize(1);
  pool.parallelFor(hits.size(), [&](size_t i) { hits[i]++; });
  pool.resize(4);
  pool.parallelFor(hits.size(), [&](size_t i) { hits[i]++; });
  for (int h : hits) require(h == 3, "a pool item ran the wrong number of times");
}

// Every kernel family this CPU (and build) runs, as setCpuIsa() switches them.
std::vector<Isa> supportedIsas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (isaSupported(isa)) isas.push_back(isa);
  }
  return isas;
}

void runIteration(int iteration) {
  Rng rng(1234 + iteration);
  cpuThreadPool().resize(3);  // as setThreads(); odd on purpose, so items split unevenly
  exerciseThreadPools();
  for (Isa isa : supportedIsas()) {
    setActiveIsa(isa);
    exerciseMoeLayers(rng);
  }
  setActiveIsa(bestIsa());
  exerciseRoutingAndLosses(rng);
  exerciseModels(rng);
  cpuThreadPool().resize(2);  // fresh workers: their thread_local scratch starts empty at every measurement
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 20;
  require(iterations >= 3, "need at least 3 iterations (two warm up the live-heap baseline)");
  std::string isaNames;
  for (Isa isa : supportedIsas()) isaNames += std::string(isaNames.empty() ? "" : ",") + isaName(isa);

  size_t baseline = 0;
  for (int i = 0; i < iterations; ++i) {
    runIteration(i);
    const size_t live = __sanitizer_get_current_allocated_bytes();
    if (i == 1) baseline = live;  // after two iterations every lazily built static and scratch buffer exists
    if (i > 1 && live > baseline + kGrowthSlackBytes) {
      fail("live heap grew from " + std::to_string(baseline) + " to " + std::to_string(live) + " bytes by iteration " +
           std::to_string(i + 1));
    }
  }
  std::printf("leak_check: %d iterations (kernels: %s), live heap %zu -> %zu bytes; LeakSanitizer runs at exit\n",
              iterations, isaNames.c_str(), baseline, __sanitizer_get_current_allocated_bytes());
  return 0;
}
