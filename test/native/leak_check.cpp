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
#include <optional>
#include <string>
#include <vector>

#include "../../native/core/errors.h"
#include "../../native/cpu/cpu_backend.h"
#include "../../native/cpu/cpu_features.h"
#include "../../native/cpu/router_losses.h"
#include "../../native/core/router_stats.h"
#include "../../native/cpu/routing.h"
#include "../../native/cpu/thread_pool.h"
#include "../../native/cpu/tile_kernels.h"

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

// Random MoE weights; a backend reads them only while it builds a layer, as with the JS arrays a packing worker reads.
struct MoeMatrices {
  std::vector<float> router, sharedGate;
  std::vector<ExpertMatrices> experts;
  std::optional<ExpertMatrices> shared;
  MoeMatrices(Rng& rng, DType source) : router(rng.floats(static_cast<size_t>(kExperts) * kHidden, 1.0f)) {
    for (int e = 0; e < kExperts; ++e) experts.emplace_back(rng, kFfn, kHidden, source);
    shared.emplace(rng, kSharedFfn, kHidden, source);
    sharedGate = rng.floats(kHidden, 0.5f);
  }
  MoeWeights weights(DType target, bool withShared) const {
    MoeWeights w;
    w.config = {kHidden, kFfn, kExperts, target};
    w.router = router.data();
    for (const ExpertMatrices& m : experts) w.experts.push_back(m.sources());
    w.hasShared = withShared;
    w.shared = {kSharedFfn, shared->sources(), sharedGate.data()};
    return w;
  }
};

std::shared_ptr<const MoeLayer> makeMoeLayer(Rng& rng, DType target, DType source, bool withShared) {
  const MoeMatrices matrices(rng, source);
  return cpuBackend().createMoeLayer(matrices.weights(target, withShared));
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

// One MoE forward with its caller-owned outputs, as ForwardWorker (native/napi/moe_layer_binding.cpp) runs it.
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
  MoeForward call;
  call.x = x.data();
  call.xStride = kHidden;
  call.tokens = tokens;
  call.policy = &policy;
  call.out = out.data();
  call.outStride = kHidden;
  call.routing = routing;
  call.work = {gateUpRows.data(), downRows.data()};
  call.stats = &stats;
  layer.forward(call);
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
  routeTokens(logits.data(), experts, tokens, experts, RouterInput::Logits, policy, RouterRule{},
              {kMax, ids.data(), weights.data(), counts.data(), load.data()});
  // A family's rule (sigmoid, selection bias, groups) takes the per-token routine and its scratch.
  std::vector<float> bias(experts, 0.05f);
  RouterRule rule;
  rule.scoring = RouterScoring::Sigmoid;
  rule.selectionBias = bias.data();
  rule.groups = experts % 4 == 0 ? 4 : 0;
  rule.keptGroups = rule.groups ? 2 : 0;
  rule.normalize = true;
  RoutingPolicy topK;
  topK.k = 2;
  validateRouterRule(rule, topK, experts);
  std::vector<int32_t> ruleIds(static_cast<size_t>(tokens) * 2), ruleCounts(tokens), ruleLoad(experts);
  std::vector<float> ruleWeights(ruleIds.size());
  routeTokens(logits.data(), experts, tokens, experts, RouterInput::Logits, topK, rule,
              {2, ruleIds.data(), ruleWeights.data(), ruleCounts.data(), ruleLoad.data()});

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
  accumulateRouterStats(logits.data(), experts, tokens, experts, RouterScoring::Sigmoid, probabilitySum.data(),
                        &entropySum);
}

// A two-layer model over seven activation buffers, with every op the graph reader can build: embedding,
// RMSNorm (row and per head), linear (with and without bias), RoPE (both styles), attention, add, MoE, dense MLP and
// a tied or untied LM head.
constexpr int kVocab = 50, kHeads = 4, kKvHeads = 2, kHeadDim = 8;
constexpr int kKvWidth = kKvHeads * kHeadDim;
enum Buffer { kResidual, kNormed, kQuery, kKey, kValue, kAttention, kBranch };

// Adds nodes to a CPU model the way the addon does: the node's sources live only for the addNode call.
class ModelBuilder {
 public:
  ModelBuilder(Rng& rng, Model& model) : rng_(rng), model_(model) {}
  MatrixSource matrix(int rows, int cols) {
    sources_.emplace_back(rng_, static_cast<size_t>(rows) * cols, DType::F32, 0.3f);
    return sources_.back().source();
  }
  void add(const GraphNode& node) {
    model_.addNode(node);
    sources_.clear();
  }
  Rng& rng() { return rng_; }

 private:
  Rng& rng_;
  Model& model_;
  std::vector<SourceMatrix> sources_;
};

LinearNode linear(ModelBuilder& b, int input, int output, int out, int in, bool withBias) {
  LinearNode n;
  n.inFeatures = in;
  n.outFeatures = out;
  n.input = input;
  n.output = output;
  n.weight = b.matrix(out, in);
  if (withBias) n.bias = b.rng().floats(out, 0.1f);
  return n;
}

RmsNormNode rmsNorm(ModelBuilder& b, int input, int output, int width, int groupSize) {
  RmsNormNode n;
  n.width = width;
  n.groupSize = groupSize;
  n.input = input;
  n.output = output;
  n.weight = b.rng().floats(groupSize, 1.0f);
  return n;
}

std::unique_ptr<Model> buildModel(Rng& rng, DType dtype, bool tiedHead) {
  GraphLayout layout;
  layout.bufferWidths = {kHidden, kHidden, kHeads * kHeadDim, kKvWidth, kKvWidth, kHeads * kHeadDim, kHidden};
  layout.vocab = kVocab;
  layout.kvWidths = {kKvWidth, kKvWidth};
  layout.moeExperts = {kExperts};
  std::unique_ptr<Model> model = cpuBackend().createModel(layout, dtype, 256);
  ModelBuilder b(rng, *model);

  EmbeddingNode embedding;
  embedding.hidden = kHidden;
  embedding.output = kResidual;
  embedding.weight = b.matrix(kVocab, kHidden);
  b.add(embedding);
  for (int layer = 0; layer < 2; ++layer) {
    b.add(rmsNorm(b, kResidual, kNormed, kHidden, kHidden));
    b.add(linear(b, kNormed, kQuery, kHeads * kHeadDim, kHidden, true));
    b.add(linear(b, kNormed, kKey, kKvWidth, kHidden, false));
    b.add(linear(b, kNormed, kValue, kKvWidth, kHidden, false));
    b.add(rmsNorm(b, kQuery, kQuery, kHeads * kHeadDim, kHeadDim));
    const RopeStyle style = layer == 0 ? RopeStyle::Halves : RopeStyle::Pairs;
    b.add(RopeNode{kQuery, kHeads, kHeadDim, kHeadDim, 10000.0, style, {}, 1.0});
    b.add(RopeNode{kKey, kKvHeads, kHeadDim, kHeadDim, 10000.0, style, {}, 1.0});
    AttentionNode attention;
    attention.query = kQuery;
    attention.key = kKey;
    attention.value = kValue;
    attention.output = kAttention;
    attention.heads = kHeads;
    attention.kvHeads = kKvHeads;
    attention.headDim = kHeadDim;
    attention.slot = layer;
    b.add(attention);
    b.add(linear(b, kAttention, kBranch, kHidden, kHeads * kHeadDim, false));
    b.add(AddNode{kResidual, kBranch, kResidual, kHidden});
    b.add(rmsNorm(b, kResidual, kNormed, kHidden, kHidden));
    if (layer == 0) {
      const MoeMatrices matrices(rng, dtype);
      MoeNode moe;
      moe.input = kNormed;
      moe.output = kBranch;
      moe.slot = 0;
      moe.weights = matrices.weights(dtype, true);
      b.add(moe);
    } else {
      MlpNode mlp;
      mlp.hidden = kHidden;
      mlp.ffn = kFfn;
      mlp.input = kNormed;
      mlp.output = kBranch;
      mlp.gate = b.matrix(kFfn, kHidden);
      mlp.up = b.matrix(kFfn, kHidden);
      mlp.down = b.matrix(kHidden, kFfn);
      b.add(mlp);
    }
    b.add(AddNode{kResidual, kBranch, kResidual, kHidden});
  }
  b.add(rmsNorm(b, kResidual, kNormed, kHidden, kHidden));
  LogitsNode head;
  head.hidden = kHidden;
  head.input = kNormed;
  head.tied = tiedHead;
  if (!tiedHead) head.weight = b.matrix(kVocab, kHidden);
  b.add(head);
  require(model->weightBytes() > 0, "model has no weights");
  return model;
}

// What StepWorker (native/napi/model_graph_binding.cpp) does for a one-segment step, with statistics.
void step(const Model& graph, Sequence& cache, const std::vector<int32_t>& tokens, const RoutingPolicy& policy,
          bool lastRowLogits) {
  const int count = static_cast<int>(tokens.size());
  std::vector<float> logits(static_cast<size_t>(lastRowLogits ? 1 : count) * kVocab);
  std::vector<int32_t> counts(count), load(kExperts);
  std::vector<double> probabilitySum(kExperts, 0.0), entropySum(1, 0.0);
  MoeStepStats stats;
  stats.counts = counts.data();
  stats.expertLoad = load.data();
  stats.sums = {probabilitySum.data(), entropySum.data()};
  StepSegment segment;
  segment.tokenIds = tokens.data();
  segment.tokens = count;
  segment.sequence = &cache;
  segment.policies = &policy;
  segment.moeStats = &stats;
  segment.logits = logits.data();
  segment.lastRowLogits = lastRowLogits;
  graph.forward({&segment, 1});
  require(allFinite(logits.data(), logits.size()), "model logits are not finite");
}

// Two sequences in one step: a prompt chunk of one beside a decode token of the other.
void stepTwo(const Model& graph, Sequence& first, Sequence& second, const RoutingPolicy& policy) {
  const std::vector<int32_t> chunk = {2, 9, 11}, decode = {5};
  std::vector<float> logitsA(kVocab), logitsB(kVocab);
  StepSegment segments[2];
  segments[0].tokenIds = chunk.data();
  segments[0].tokens = 3;
  segments[0].sequence = &first;
  segments[0].policies = &policy;
  segments[0].logits = logitsA.data();
  segments[0].lastRowLogits = true;
  segments[1] = segments[0];
  segments[1].tokenIds = decode.data();
  segments[1].tokens = 1;
  segments[1].sequence = &second;
  segments[1].logits = logitsB.data();
  graph.forward({segments, 2});
  require(allFinite(logitsA.data(), kVocab) && allFinite(logitsB.data(), kVocab), "batched logits are not finite");
}

void exerciseModels(Rng& rng) {
  const std::vector<RoutingPolicy> policies = somePolicies();
  for (const DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (const bool tied : {true, false}) {
      const std::unique_ptr<Model> graph = buildModel(rng, dtype, tied);
      const RoutingPolicy& policy = policies[static_cast<size_t>(dtype) % policies.size()];
      // Sequences take KV blocks from the model's pool and give them back when they go; steps take scratch sets.
      std::shared_ptr<Sequence> cache = graph->createSequence(16);
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
      const std::shared_ptr<Sequence> scratch = graph->createSequence(static_cast<int>(tokens.size()));
      StepSegment request;
      request.tokenIds = tokens.data();
      request.tokens = static_cast<int>(tokens.size());
      request.sequence = scratch.get();
      request.policies = &policy;
      request.targets = targets.data();
      request.targetLogProbs = logProbs.data();
      graph->forward({&request, 1});
      require(std::isnan(logProbs[2]) && logProbs[0] <= 0.0 && std::isfinite(logProbs[4]), "scores are wrong");

      // A new sequence on the KV blocks the first one gave back, batched with another; then the model goes
      // (dispose closes the scratch pool).
      cache.reset();
      cache = graph->createSequence(16);
      step(*graph, *cache, {7, 1}, policy, false);
      std::shared_ptr<Sequence> other = graph->createSequence(16);
      step(*graph, *other, {3}, policy, true);
      stepTwo(*graph, *cache, *other, policy);
      require(cache->length() == 5 && other->length() == 2, "a batched step did not commit both sequences");
      graph->close();
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
