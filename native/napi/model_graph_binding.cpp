#include "model_graph_binding.h"

#include <string>
#include <vector>

#include "addon_data.h"
#include "backends.h"
#include "graph_node_reader.h"
#include "js_args.h"
#include "js_errors.h"
#include "kv_session_binding.h"
#include "promise_worker.h"

namespace dynamoe {

namespace {

constexpr int kMaxTokensPerStep = 1 << 20;

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

// One forward step; result arrays are allocated here on the JS thread and filled by the worker.
class ForwardWorker : public PromiseWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<const Model> graph, std::shared_ptr<Sequence> cache,
                std::shared_ptr<std::atomic<bool>> busy, std::vector<int32_t> tokens,
                std::vector<RoutingPolicy> policies, bool lastRowLogits, bool withStats, std::vector<int32_t> targets)
      : PromiseWorker(env), graph_(std::move(graph)), cache_(std::move(cache)), busy_(std::move(busy)),
        tokens_(std::move(tokens)), policies_(std::move(policies)), lastRowLogits_(lastRowLogits),
        targets_(std::move(targets)) {
    const GraphLayout& layout = graph_->layout();
    const int count = static_cast<int>(tokens_.size());
    Napi::Object result = Napi::Object::New(env);
    if (targets_.empty()) {
      Napi::Float32Array logits =
          Napi::Float32Array::New(env, static_cast<size_t>(lastRowLogits ? 1 : count) * layout.vocab);
      result.Set("logits", logits);
      logits_ = logits.Data();
    } else {
      Napi::Float64Array logProbs = Napi::Float64Array::New(env, count);
      result.Set("logProbs", logProbs);
      logProbs_ = logProbs.Data();
    }
    if (withStats) {
      Napi::Array stats = Napi::Array::New(env, layout.moeExperts.size());
      for (size_t slot = 0; slot < layout.moeExperts.size(); ++slot) {
        const int experts = layout.moeExperts[slot];
        Napi::Int32Array counts = Napi::Int32Array::New(env, count);
        Napi::Int32Array load = Napi::Int32Array::New(env, experts);
        Napi::Float64Array probabilitySum = Napi::Float64Array::New(env, experts);
        Napi::Float64Array entropySum = Napi::Float64Array::New(env, 1);
        Napi::Object entry = Napi::Object::New(env);
        entry.Set("counts", counts);
        entry.Set("expertLoad", load);
        entry.Set("probabilitySum", probabilitySum);
        entry.Set("entropySum", entropySum);
        stats.Set(static_cast<uint32_t>(slot), entry);
        MoeStepStats s;
        s.counts = counts.Data();
        s.expertLoad = load.Data();
        s.sums = {probabilitySum.Data(), entropySum.Data()};
        stats_.push_back(s);
      }
      result.Set("stats", stats);
    }
    result_ = Napi::Persistent(result);
  }
  ~ForwardWorker() override {
    if (busy_) busy_->store(false);
  }

 protected:
  void run() override {
    StepRequest request;
    request.tokenIds = tokens_.data();
    request.tokens = static_cast<int>(tokens_.size());
    request.sequence = cache_.get();
    request.policies = policies_.data();
    request.moeStats = stats_.empty() ? nullptr : stats_.data();
    request.logits = logits_;
    request.lastRowLogits = lastRowLogits_;
    request.targets = targets_.empty() ? nullptr : targets_.data();
    request.targetLogProbs = logProbs_;
    graph_->forward(request);
  }
  Napi::Value result(Napi::Env) override { return result_.Value(); }

 private:
  std::shared_ptr<const Model> graph_;
  std::shared_ptr<Sequence> cache_;
  std::shared_ptr<std::atomic<bool>> busy_;
  std::vector<int32_t> tokens_;
  std::vector<RoutingPolicy> policies_;
  bool lastRowLogits_;
  std::vector<int32_t> targets_;  // scoring mode when not empty
  float* logits_ = nullptr;
  double* logProbs_ = nullptr;
  std::vector<MoeStepStats> stats_;
  Napi::ObjectReference result_;
};

}  // namespace

Napi::Function ModelGraphBinding::define(Napi::Env env) {
  KvSessionBinding::define(env);
  return DefineClass(env, "ModelGraph",
                     {InstanceMethod<&ModelGraphBinding::addNode>("addNode"),
                      InstanceMethod<&ModelGraphBinding::createSession>("createSession"),
                      InstanceMethod<&ModelGraphBinding::forward>("forward"),
                      InstanceMethod<&ModelGraphBinding::dispose>("dispose"),
                      InstanceAccessor<&ModelGraphBinding::weightBytes>("weightBytes"),
                      InstanceAccessor<&ModelGraphBinding::disposed>("disposed")});
}

// new ModelGraph({ bufferWidths, vocab, kvWidths, moeExperts, dtype, device? })
ModelGraphBinding::ModelGraphBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelGraphBinding>(info) {
  Napi::Env env = info.Env();
  Napi::Object options = requireObject(info[0], "graph layout");
  GraphLayout layout;
  layout.bufferWidths = readDimensions(options, "bufferWidths", 1, 1 << 20);
  layout.vocab = readInt(options, "vocab", 1, 1 << 24);
  layout.kvWidths = readDimensions(options, "kvWidths", 1, 1 << 20);
  layout.moeExperts = readDimensions(options, "moeExperts", 1, 1 << 16);
  Napi::Value dtype = options.Get("dtype");
  if (!dtype.IsString() || !parseDType(dtype.As<Napi::String>().Utf8Value(), &dtype_)) {
    throwJs(env, code::kDtype, "dtype must be 'f32', 'f16' or 'bf16'");
  }
  const Backend& backend = backendForDevice(options.Get("device"));
  translateErrors(env, [&] {
    backend.requireUsable();
    graph_ = backend.createModel(layout, dtype_);
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

// forward(session | null, tokens: Int32Array, { policies, lastRowLogits, stats, targets? })
// With `targets` (Int32Array, one next-token id or -1 per token) it returns { logProbs } instead of { logits }.
Napi::Value ModelGraphBinding::forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::shared_ptr<Model>& graph = requireGraph(env);
  if (building_) throwJs(env, code::kValue, "the model is still being built");
  const GraphLayout& layout = graph->layout();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throwJs(env, code::kType, "tokens must be an Int32Array");
  }
  Napi::Int32Array tokenArray = info[1].As<Napi::Int32Array>();
  if (tokenArray.ElementLength() == 0 || tokenArray.ElementLength() > static_cast<size_t>(kMaxTokensPerStep)) {
    throwJs(env, code::kShape, "tokens must hold 1 to 2^20 token ids");
  }
  std::vector<int32_t> tokens(tokenArray.Data(), tokenArray.Data() + tokenArray.ElementLength());
  Napi::Object options = requireObject(info[2], "forward options");
  Napi::Value policyList = options.Get("policies");
  if (!policyList.IsArray() || policyList.As<Napi::Array>().Length() != layout.moeExperts.size()) {
    throwJs(env, code::kPolicy, "policies must be an array with one policy per MoE layer");
  }
  std::vector<RoutingPolicy> policies;
  for (size_t slot = 0; slot < layout.moeExperts.size(); ++slot) {
    policies.push_back(readPolicy(policyList.As<Napi::Array>().Get(static_cast<uint32_t>(slot)), layout.moeExperts[slot]));
  }
  const bool lastRowLogits = readBool(options, "lastRowLogits", false);
  const bool withStats = readBool(options, "stats", false);
  std::vector<int32_t> targets;
  Napi::Value targetValue = options.Get("targets");
  if (!targetValue.IsUndefined()) {
    if (!targetValue.IsTypedArray() || targetValue.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throwJs(env, code::kType, "targets must be an Int32Array");
    }
    Napi::Int32Array targetArray = targetValue.As<Napi::Int32Array>();
    if (targetArray.ElementLength() != tokens.size()) throwJs(env, code::kShape, "targets must have one id per token");
    targets.assign(targetArray.Data(), targetArray.Data() + targetArray.ElementLength());
    for (int32_t id : targets) {
      if (id < -1 || id >= layout.vocab) {
        throwJs(env, code::kValue, "targets must be token ids in [0, vocab) or -1, got " + std::to_string(id));
      }
    }
  }

  std::shared_ptr<Sequence> cache;
  std::shared_ptr<std::atomic<bool>> busy;
  if (info[0].IsNull() || info[0].IsUndefined()) {
    translateErrors(env, [&] {
      cache = graph->createSequence(static_cast<int>(tokens.size()));
    });
  } else {
    if (!info[0].IsObject()) throwJs(env, code::kType, "session must be a session from model.createSession()");
    Napi::Object sessionObject = info[0].As<Napi::Object>();
    if (!sessionObject.InstanceOf(addonData(env).kvSession.Value())) {
      throwJs(env, code::kType, "session must be a session from model.createSession()");
    }
    KvSessionBinding* session = KvSessionBinding::Unwrap(sessionObject);
    cache = session->acquire(env, graph.get());
    busy = session->busy();
  }
  sealed_ = true;
  try {
    auto* worker = new ForwardWorker(env, graph, std::move(cache), busy, std::move(tokens), std::move(policies),
                                     lastRowLogits, withStats, std::move(targets));
    return worker->start();
  } catch (...) {
    if (busy) busy->store(false);  // the session stays usable when the step could not even start
    throw;
  }
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
