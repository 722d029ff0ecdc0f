#include "model_graph_binding.h"

#include <algorithm>
#include <string>
#include <vector>

#include "addon_data.h"
#include "backends.h"
#include "graph_node_reader.h"
#include "js_args.h"
#include "js_errors.h"
#include "kv_session_binding.h"
#include "promise_worker.h"
#include "token_choice_binding.h"
#include "../core/token_logprobs.h"

namespace dynamoe {

// One segment of a step as the worker holds it: its sequence, inputs, and the result arrays (allocated on the JS
// thread, filled by the worker).
struct SegmentCall {
  std::shared_ptr<Sequence> cache;
  std::shared_ptr<std::atomic<bool>> busy;  // of the session, cleared when the step ends; null for a fresh sequence
  std::vector<int32_t> tokens;
  std::vector<RoutingPolicy> policies;
  bool lastRowLogits = false;
  TokenChoice choice;            // limit > 0: the step returns the last row's chosen id instead of its logits
  int32_t chosenToken = -1;
  // >= 0 (with a choice): the chosen id's log-probability and the `logprobs` most likely ids' are returned too. The
  // backend then hands back the last row's logits, and the worker chooses on the host (the same id, token_choice.h).
  int logprobs = -1;
  std::vector<float> hostLogits;
  TokenLogprobs logprobResult;
  std::vector<int32_t> targets;  // scoring mode when not empty
  float* logits = nullptr;
  double* logProbs = nullptr;
  std::vector<MoeStepStats> stats;
  // Per MoE slot, the caller's running { probabilitySum, entropySum } the step adds to (token by token, so a
  // request's sums have the same bits however its tokens were split into steps); empty: fresh zeroed sums.
  std::vector<Napi::ObjectReference> runningSums;
};

namespace {

constexpr int kMaxTokensPerStep = 1 << 20;
constexpr int kMaxSegmentsPerStep = 4096;

std::vector<int> readDimensions(const Napi::Object& options, const char* key, int min, int max) {
  Napi::Value value = options.Get(key);
  if (!value.IsArray()) throwJs(options.Env(), code::kType, std::string(key) + " must be an array of integers");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Object holder = Napi::Object::New(options.Env());
    holder.Set("value", array.Get(i));
    out.push_back(readInt(holder, "value", min, max));
  }
  return out;
}

// Packs or uploads one node's weights on a worker thread, then accounts for them on the JS thread.
class AddNodeWorker : public PromiseWorker {
 public:
  AddNodeWorker(Napi::Env env, ModelGraphBinding* owner, Napi::Object ownerObject, std::shared_ptr<Model> model,
                ReadNode node)
      : PromiseWorker(env), owner_(owner), ownerRef_(Napi::Persistent(ownerObject)), model_(std::move(model)),
        node_(std::move(node)) {}
  ~AddNodeWorker() override { owner_->buildFinished(); }

 protected:
  void run() override { model_->addNode(node_.node); }
  Napi::Value result(Napi::Env env) override {
    owner_->nodeAdded(env);
    return env.Undefined();
  }

 private:
  ModelGraphBinding* owner_;
  Napi::ObjectReference ownerRef_;  // keeps the owner alive while the worker runs
  std::shared_ptr<Model> model_;    // alive even when the owner is disposed meanwhile
  ReadNode node_;
};

// One step over many segments; resolves to one result object per segment.
class StepWorker : public PromiseWorker {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<const Model> graph, std::vector<SegmentCall> segments, bool asArray)
      : PromiseWorker(env), graph_(std::move(graph)), segments_(std::move(segments)) {
    const GraphLayout& layout = graph_->layout();
    Napi::Array results = Napi::Array::New(env, segments_.size());
    for (size_t i = 0; i < segments_.size(); ++i) {
      SegmentCall& segment = segments_[i];
      const int count = static_cast<int>(segment.tokens.size());
      Napi::Object result = Napi::Object::New(env);
      if (segment.logprobs >= 0) {
        segment.hostLogits.resize(layout.vocab);
        segment.logits = segment.hostLogits.data();
      } else if (segment.choice.limit > 0) {
        // The id is set on the result when the step ends (result()).
      } else if (segment.targets.empty()) {
        Napi::Float32Array logits =
            Napi::Float32Array::New(env, static_cast<size_t>(segment.lastRowLogits ? 1 : count) * layout.vocab);
        result.Set("logits", logits);
        segment.logits = logits.Data();
      } else {
        Napi::Float64Array logProbs = Napi::Float64Array::New(env, count);
        result.Set("logProbs", logProbs);
        segment.logProbs = logProbs.Data();
      }
      if (!segment.stats.empty()) {
        Napi::Array stats = Napi::Array::New(env, layout.moeExperts.size());
        for (size_t slot = 0; slot < layout.moeExperts.size(); ++slot) {
          const int experts = layout.moeExperts[slot];
          Napi::Int32Array counts = Napi::Int32Array::New(env, count);
          Napi::Int32Array ffnCounts = Napi::Int32Array::New(env, count);
          Napi::Int32Array load = Napi::Int32Array::New(env, experts);
          const bool running = !segment.runningSums.empty();
          Napi::Float64Array probabilitySum =
              running ? segment.runningSums[slot].Get("probabilitySum").As<Napi::Float64Array>()
                      : Napi::Float64Array::New(env, experts);
          Napi::Float64Array entropySum = running ? segment.runningSums[slot].Get("entropySum").As<Napi::Float64Array>()
                                                  : Napi::Float64Array::New(env, 1);
          Napi::Object entry = Napi::Object::New(env);
          entry.Set("counts", counts);
          entry.Set("ffnCounts", ffnCounts);
          entry.Set("expertLoad", load);
          entry.Set("probabilitySum", probabilitySum);
          entry.Set("entropySum", entropySum);
          stats.Set(static_cast<uint32_t>(slot), entry);
          MoeStepStats& s = segment.stats[slot];
          s.counts = counts.Data();
          s.ffnCounts = ffnCounts.Data();
          s.expertLoad = load.Data();
          s.sums = {probabilitySum.Data(), entropySum.Data()};
        }
        result.Set("stats", stats);
      }
      results.Set(static_cast<uint32_t>(i), result);
    }
    result_ = Napi::Persistent(asArray ? results.As<Napi::Object>() : results.Get(0u).As<Napi::Object>());
  }
  ~StepWorker() override {
    for (SegmentCall& segment : segments_) {
      if (segment.busy) segment.busy->store(false);
    }
  }

 protected:
  void run() override {
    std::vector<StepSegment> request(segments_.size());
    for (size_t i = 0; i < segments_.size(); ++i) {
      SegmentCall& segment = segments_[i];
      StepSegment& out = request[i];
      out.sequence = segment.cache.get();
      out.tokenIds = segment.tokens.data();
      out.tokens = static_cast<int>(segment.tokens.size());
      out.policies = segment.policies.data();
      out.moeStats = segment.stats.empty() ? nullptr : segment.stats.data();
      out.logits = segment.logits;
      out.lastRowLogits = segment.lastRowLogits;
      out.targets = segment.targets.empty() ? nullptr : segment.targets.data();
      out.targetLogProbs = segment.logProbs;
      // A segment that reports logprobs takes its logits back and chooses below.
      out.choice = segment.logprobs >= 0 ? TokenChoice{} : segment.choice;
      out.chosenToken = &segment.chosenToken;
    }
    graph_->forward({request.data(), static_cast<int>(request.size())});
    for (SegmentCall& segment : segments_) {
      if (segment.logprobs < 0) continue;
      segment.chosenToken = chooseToken(segment.hostLogits.data(), segment.choice);
      segment.logprobResult =
          tokenLogprobs(segment.hostLogits.data(), segment.choice.limit, segment.chosenToken, segment.logprobs);
    }
  }
  Napi::Value result(Napi::Env env) override {
    Napi::Object value = result_.Value();
    for (size_t i = 0; i < segments_.size(); ++i) {
      if (segments_[i].choice.limit <= 0) continue;
      Napi::Object entry = value.IsArray() ? value.As<Napi::Array>().Get(static_cast<uint32_t>(i)).As<Napi::Object>()
                                            : value;
      entry.Set("token", Napi::Number::New(env, segments_[i].chosenToken));
      if (segments_[i].logprobs < 0) continue;
      const TokenLogprobs& lp = segments_[i].logprobResult;
      entry.Set("logprob", Napi::Number::New(env, lp.chosen));
      Napi::Int32Array ids = Napi::Int32Array::New(env, lp.count);
      Napi::Float64Array logprobs = Napi::Float64Array::New(env, lp.count);
      std::copy(lp.topIds, lp.topIds + lp.count, ids.Data());
      std::copy(lp.topLogprobs, lp.topLogprobs + lp.count, logprobs.Data());
      Napi::Object top = Napi::Object::New(env);
      top.Set("ids", ids);
      top.Set("logprobs", logprobs);
      entry.Set("topLogprobs", top);
    }
    return value;
  }

 private:
  std::shared_ptr<const Model> graph_;
  std::vector<SegmentCall> segments_;
  Napi::ObjectReference result_;
};

// Clears the busy flags of sessions taken for a step that never started.
struct BusyRelease {
  std::vector<SegmentCall>* segments;
  bool armed = true;
  ~BusyRelease() {
    if (!armed) return;
    for (SegmentCall& segment : *segments) {
      if (segment.busy) segment.busy->store(false);
    }
  }
};

}  // namespace

Napi::Function ModelGraphBinding::define(Napi::Env env) {
  KvSessionBinding::define(env);
  return DefineClass(env, "ModelGraph",
                     {InstanceMethod<&ModelGraphBinding::addNode>("addNode"),
                      InstanceMethod<&ModelGraphBinding::createSession>("createSession"),
                      InstanceMethod<&ModelGraphBinding::forward>("forward"),
                      InstanceMethod<&ModelGraphBinding::step>("step"),
                      InstanceAccessor<&ModelGraphBinding::kvPool>("kvPool"),
                      InstanceMethod<&ModelGraphBinding::dispose>("dispose"),
                      InstanceAccessor<&ModelGraphBinding::weightBytes>("weightBytes"),
                      InstanceAccessor<&ModelGraphBinding::disposed>("disposed")});
}

// new ModelGraph({ bufferWidths, vocab, kvWidths, kvValueWidths?, moeExperts, dtype, kvPoolTokens, device? })
ModelGraphBinding::ModelGraphBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelGraphBinding>(info) {
  Napi::Env env = info.Env();
  Napi::Object options = requireObject(info[0], "graph layout");
  GraphLayout layout;
  layout.bufferWidths = readDimensions(options, "bufferWidths", 1, 1 << 20);
  layout.vocab = readInt(options, "vocab", 1, 1 << 24);
  layout.kvWidths = readDimensions(options, "kvWidths", 1, 1 << 20);
  // Values as wide as keys unless said otherwise; 0 gives a keys-only slot (an MLA layer's latent cache).
  if (options.Get("kvValueWidths").IsUndefined()) {
    layout.kvValueWidths = layout.kvWidths;
  } else {
    layout.kvValueWidths = readDimensions(options, "kvValueWidths", 0, 1 << 20);
    if (layout.kvValueWidths.size() != layout.kvWidths.size()) {
      throwJs(env, code::kShape, "kvValueWidths must have one entry per kvWidths entry");
    }
  }
  layout.moeExperts = readDimensions(options, "moeExperts", 1, 1 << 16);
  const int kvPoolTokens = readInt(options, "kvPoolTokens", 1, 1 << 30);
  Napi::Value dtype = options.Get("dtype");
  if (!dtype.IsString() || !parseDType(dtype.As<Napi::String>().Utf8Value(), &dtype_)) {
    throwJs(env, code::kDtype, "dtype must be 'f32', 'f16' or 'bf16'");
  }
  const Backend& backend = backendForDevice(options.Get("device"));
  translateErrors(env, [&] {
    backend.requireUsable();
    graph_ = backend.createModel(layout, dtype_, kvPoolTokens);
  });
}

ModelGraphBinding::~ModelGraphBinding() {
  if (graph_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -externalBytes_);
}

const std::shared_ptr<Model>& ModelGraphBinding::requireGraph(Napi::Env env) const {
  if (!graph_) throwJs(env, code::kDisposed, "this model was disposed; load it again");
  return graph_;
}

void ModelGraphBinding::nodeAdded(Napi::Env env) {
  if (!graph_) return;  // disposed while packing
  const int64_t bytes = static_cast<int64_t>(graph_->weightBytes()) - externalBytes_;
  externalBytes_ += bytes;
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
}

Napi::Value ModelGraphBinding::addNode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::shared_ptr<Model>& graph = requireGraph(env);
  if (sealed_) throwJs(env, code::kValue, "nodes cannot be added after the first forward");
  if (building_) throwJs(env, code::kValue, "addNode: await the previous node first");
  ReadNode node = readGraphNode(info[0], graph->layout(), dtype_);
  building_ = true;
  auto* worker = new AddNodeWorker(env, this, Value(), graph, std::move(node));
  return worker->start();
}

// createSession(capacity): a KV cache for one sequence of up to `capacity` tokens.
Napi::Value ModelGraphBinding::createSession(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::shared_ptr<Model>& graph = requireGraph(env);
  Napi::Object holder = Napi::Object::New(env);
  holder.Set("capacity", info[0]);
  const int capacity = readInt(holder, "capacity", 1, kMaxTokensPerStep);
  KvSessionBinding::Init init;
  translateErrors(env, [&] {
    init.cache = graph->createSequence(capacity);
  });
  init.graph = graph.get();
  return addonData(env).kvSession.New({Napi::External<KvSessionBinding::Init>::New(env, &init)});
}

// A segment's inputs (tokens, { policies, lastRowLogits, stats, sums?, targets?, choice? }), read and checked on the JS
// thread.
void ModelGraphBinding::readSegment(Napi::Env env, const Napi::Value& tokenValue, const Napi::Value& optionValue,
                                    SegmentCall& segment) const {
  const GraphLayout& layout = graph_->layout();
  if (!tokenValue.IsTypedArray() || tokenValue.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throwJs(env, code::kType, "tokens must be an Int32Array");
  }
  Napi::Int32Array tokenArray = tokenValue.As<Napi::Int32Array>();
  if (tokenArray.ElementLength() == 0 || tokenArray.ElementLength() > static_cast<size_t>(kMaxTokensPerStep)) {
    throwJs(env, code::kShape, "tokens must hold 1 to 2^20 token ids");
  }
  segment.tokens.assign(tokenArray.Data(), tokenArray.Data() + tokenArray.ElementLength());
  Napi::Object options = requireObject(optionValue, "forward options");
  Napi::Value policyList = options.Get("policies");
  if (!policyList.IsArray() || policyList.As<Napi::Array>().Length() != layout.moeExperts.size()) {
    throwJs(env, code::kPolicy, "policies must be an array with one policy per MoE layer");
  }
  for (size_t slot = 0; slot < layout.moeExperts.size(); ++slot) {
    segment.policies.push_back(
        readPolicy(policyList.As<Napi::Array>().Get(static_cast<uint32_t>(slot)), layout.moeExperts[slot]));
  }
  segment.lastRowLogits = readBool(options, "lastRowLogits", false);
  if (!options.Get("choice").IsUndefined()) {
    segment.choice = readTokenChoice(options.Get("choice"), layout.vocab);
    if (!segment.lastRowLogits || !options.Get("targets").IsUndefined()) {
      throwJs(env, code::kValue, "choice needs lastRowLogits: true and no targets");
    }
  }
  if (!options.Get("logprobs").IsUndefined()) {
    if (segment.choice.limit <= 0) throwJs(env, code::kValue, "logprobs needs a choice");
    segment.logprobs = readInt(options, "logprobs", 0, kMaxTopLogprobs);
  }
  if (readBool(options, "stats", false)) segment.stats.resize(layout.moeExperts.size());
  Napi::Value sums = options.Get("sums");
  if (!sums.IsUndefined()) {
    const auto isFloat64Array = [](const Napi::Value& v, size_t length) {
      return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array &&
             v.As<Napi::TypedArray>().ElementLength() == length;
    };
    if (segment.stats.empty() || !sums.IsArray() || sums.As<Napi::Array>().Length() != layout.moeExperts.size()) {
      throwJs(env, code::kType, "sums must be an array with one entry per MoE layer, given with stats: true");
    }
    for (size_t slot = 0; slot < layout.moeExperts.size(); ++slot) {
      Napi::Value entry = sums.As<Napi::Array>().Get(static_cast<uint32_t>(slot));
      if (!entry.IsObject() ||
          !isFloat64Array(entry.As<Napi::Object>().Get("probabilitySum"), layout.moeExperts[slot]) ||
          !isFloat64Array(entry.As<Napi::Object>().Get("entropySum"), 1)) {
        throwJs(env, code::kType,
                "sums[" + std::to_string(slot) + "] must be { probabilitySum: Float64Array(" +
                    std::to_string(layout.moeExperts[slot]) + "), entropySum: Float64Array(1) }");
      }
      segment.runningSums.push_back(Napi::Persistent(entry.As<Napi::Object>()));
    }
  }
  Napi::Value targetValue = options.Get("targets");
  if (!targetValue.IsUndefined()) {
    if (!targetValue.IsTypedArray() || targetValue.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throwJs(env, code::kType, "targets must be an Int32Array");
    }
    Napi::Int32Array targetArray = targetValue.As<Napi::Int32Array>();
    if (targetArray.ElementLength() != segment.tokens.size()) {
      throwJs(env, code::kShape, "targets must have one id per token");
    }
    segment.targets.assign(targetArray.Data(), targetArray.Data() + targetArray.ElementLength());
    for (int32_t id : segment.targets) {
      if (id < -1 || id >= layout.vocab) {
        throwJs(env, code::kValue, "targets must be token ids in [0, vocab) or -1, got " + std::to_string(id));
      }
    }
  }
}

// The session's sequence, taken for one step (a fresh sequence of the segment's length for null).
void ModelGraphBinding::takeSession(Napi::Env env, const Napi::Value& session, SegmentCall& segment) const {
  if (session.IsNull() || session.IsUndefined()) {
    translateErrors(env, [&] {
      segment.cache = graph_->createSequence(static_cast<int>(segment.tokens.size()));
    });
    return;
  }
  if (!session.IsObject() || !session.As<Napi::Object>().InstanceOf(addonData(env).kvSession.Value())) {
    throwJs(env, code::kType, "session must be a session from model.createSession()");
  }
  KvSessionBinding* binding = KvSessionBinding::Unwrap(session.As<Napi::Object>());
  segment.cache = binding->acquire(env, graph_.get());
  segment.busy = binding->busy();
}

Napi::Value ModelGraphBinding::startStep(Napi::Env env, std::vector<SegmentCall> segments, bool asArray) {
  sealed_ = true;
  BusyRelease release{&segments};
  auto* worker = new StepWorker(env, graph_, std::move(segments), asArray);
  release.armed = false;  // the worker clears the flags when it ends
  return worker->start();
}

// forward(session | null, tokens: Int32Array, { policies, lastRowLogits, stats, targets? })
// With `targets` (Int32Array, one next-token id or -1 per token) it returns { logProbs } instead of { logits }.
Napi::Value ModelGraphBinding::forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireGraph(env);
  if (building_) throwJs(env, code::kValue, "the model is still being built");
  std::vector<SegmentCall> segments(1);
  readSegment(env, info[1], info[2], segments[0]);
  takeSession(env, info[0], segments[0]);
  return startStep(env, std::move(segments), false);
}

// step([{ session, tokens, policies, lastRowLogits, stats, targets? }, ...]): one step over every segment's rows;
// resolves to one { logits } or { logProbs } (and stats) per segment. Each segment has a different session.
Napi::Value ModelGraphBinding::step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireGraph(env);
  if (building_) throwJs(env, code::kValue, "the model is still being built");
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) {
    throwJs(env, code::kType, "step takes a non-empty array of segments");
  }
  Napi::Array list = info[0].As<Napi::Array>();
  if (list.Length() > static_cast<uint32_t>(kMaxSegmentsPerStep)) {
    throwJs(env, code::kShape, "a step holds at most " + std::to_string(kMaxSegmentsPerStep) + " segments");
  }
  std::vector<SegmentCall> segments(list.Length());
  BusyRelease release{&segments};  // sessions taken before a later segment fails are given back
  size_t rows = 0;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Object entry = requireObject(list.Get(i), "step segment");
    readSegment(env, entry.Get("tokens"), entry, segments[i]);
    rows += segments[i].tokens.size();
    if (rows > static_cast<size_t>(kMaxTokensPerStep)) throwJs(env, code::kShape, "a step holds at most 2^20 tokens");
    if (entry.Get("session").IsNull() || entry.Get("session").IsUndefined()) {
      throwJs(env, code::kType, "every segment of a step needs its session");
    }
    takeSession(env, entry.Get("session"), segments[i]);
  }
  release.armed = false;
  return startStep(env, std::move(segments), true);
}

Napi::Value ModelGraphBinding::kvPool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const KvPoolState state = requireGraph(env)->kvPool();
  Napi::Object out = Napi::Object::New(env);
  out.Set("blockTokens", state.blockTokens);
  out.Set("blocks", state.blocks);
  out.Set("freeBlocks", state.freeBlocks);
  out.Set("blockBytes", static_cast<double>(state.blockBytes));
  return out;
}

Napi::Value ModelGraphBinding::dispose(const Napi::CallbackInfo& info) {
  if (graph_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -externalBytes_);
  if (graph_) graph_->close();
  graph_.reset();
  externalBytes_ = 0;
  return info.Env().Undefined();
}

Napi::Value ModelGraphBinding::weightBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(requireGraph(info.Env())->weightBytes()));
}

Napi::Value ModelGraphBinding::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !graph_);
}

}  // namespace dynamoe
