#include "moe_layer_binding.h"

#include <string>
#include <vector>

#include "addon_data.h"
#include "js_args.h"
#include "js_errors.h"
#include "moe_layer_sources.h"
#include "promise_worker.h"
#include "routing_result.h"

namespace dynamoe {

namespace {

// Packs weights on a worker thread; resolves to a MoeLayerBinding instance.
class PackWorker : public PromiseWorker {
 public:
  PackWorker(Napi::Env env, MoeLayerSources sources) : PromiseWorker(env), sources_(std::move(sources)) {}

 protected:
  void run() override { layer_ = sources_.backend->createMoeLayer(sources_.weights); }
  Napi::Value result(Napi::Env env) override {
    auto adopt = Napi::External<std::shared_ptr<const MoeLayer>>::New(env, &layer_);
    return addonData(env).moeLayer.New({adopt});
  }

 private:
  MoeLayerSources sources_;
  std::shared_ptr<const MoeLayer> layer_;
};

class ForwardWorker : public PromiseWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<const MoeLayer> layer, Napi::Float32Array x, int tokens,
                const RoutingPolicy& policy)
      : PromiseWorker(env),
        layer_(std::move(layer)),
        x_(x.Data(), x.Data() + x.ElementLength()),  // a copy: JS may change its array while we run
        tokens_(tokens),
        policy_(policy),
        routing_(env, tokens, layer_->config().routedSlots(), policy.kMax(layer_->config().routedSlots())) {
    const int experts = layer_->config().experts;
    Napi::Float32Array output = Napi::Float32Array::New(env, x.ElementLength());
    Napi::Int32Array gateUpRows = Napi::Int32Array::New(env, experts);
    Napi::Int32Array downRows = Napi::Int32Array::New(env, experts);
    Napi::Object result = Napi::Object::New(env);
    result.Set("output", output);
    result.Set("routing", routing_.value());
    Napi::Object work = Napi::Object::New(env);
    work.Set("gateUpRows", gateUpRows);
    work.Set("downRows", downRows);
    result.Set("work", work);
    output_ = output.Data();
    counters_ = {gateUpRows.Data(), downRows.Data()};
    result_ = Napi::Persistent(result);
  }

 protected:
  void run() override {
    const size_t hidden = layer_->config().hidden;
    MoeForward call;
    call.x = x_.data();
    call.xStride = hidden;
    call.tokens = tokens_;
    call.policy = &policy_;
    call.out = output_;
    call.outStride = hidden;
    call.routing = routing_.output();
    call.work = counters_;
    layer_->forward(call);
  }
  Napi::Value result(Napi::Env) override { return result_.Value(); }

 private:
  std::shared_ptr<const MoeLayer> layer_;
  std::vector<float> x_;
  int tokens_;
  RoutingPolicy policy_;
  RoutingResultArrays routing_;
  float* output_ = nullptr;
  WorkCounters counters_;
  Napi::ObjectReference result_;
};

// Times each stage of `runs` forwards on the device.
class ProfileWorker : public PromiseWorker {
 public:
  ProfileWorker(Napi::Env env, std::shared_ptr<const MoeLayer> layer, Napi::Float32Array x, int tokens,
                const RoutingPolicy& policy, int runs)
      : PromiseWorker(env),
        layer_(std::move(layer)),
        x_(x.Data(), x.Data() + x.ElementLength()),
        tokens_(tokens),
        policy_(policy),
        runs_(runs) {}

 protected:
  void run() override { times_ = layer_->profile(x_.data(), tokens_, policy_, runs_); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    result.Set("routeUs", times_.routeUs);
    result.Set("planUs", times_.planUs);
    result.Set("gemm1Us", times_.gemm1Us);
    result.Set("gemm2Us", times_.gemm2Us);
    result.Set("finalizeUs", times_.finalizeUs);
    result.Set("totalUs", times_.totalUs);
    result.Set("runs", times_.runs);
    return result;
  }

 private:
  std::shared_ptr<const MoeLayer> layer_;
  std::vector<float> x_;
  int tokens_;
  RoutingPolicy policy_;
  int runs_;
  StageTimes times_;
};

}  // namespace

Napi::Function MoeLayerBinding::define(Napi::Env env) {
  Napi::Function constructor = DefineClass(env, "MoeLayerBinding",
                     {StaticMethod<&MoeLayerBinding::pack>("pack"),
                      InstanceMethod<&MoeLayerBinding::forward>("forward"),
                      InstanceMethod<&MoeLayerBinding::profile>("profile"),
                      InstanceAccessor<&MoeLayerBinding::device>("device"),
                      InstanceMethod<&MoeLayerBinding::dispose>("dispose"),
                      InstanceAccessor<&MoeLayerBinding::weightBytes>("weightBytes"),
                      InstanceAccessor<&MoeLayerBinding::disposed>("disposed")});
  // Kept per environment (main thread, each worker thread) for pack() to build instances with.
  addonData(env).moeLayer = Napi::Persistent(constructor);
  return constructor;
}

// Packs the weights in `options` now, or adopts a layer PackWorker packed (an External argument).
MoeLayerBinding::MoeLayerBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MoeLayerBinding>(info) {
  Napi::Env env = info.Env();
  if (info[0].IsExternal()) {
    layer_ = *info[0].As<Napi::External<std::shared_ptr<const MoeLayer>>>().Data();
  } else {
    const MoeLayerSources sources = readMoeLayerSources(info[0]);
    translateErrors(env, [&] { layer_ = sources.backend->createMoeLayer(sources.weights); });
  }
  externalBytes_ = static_cast<int64_t>(layer_->weightBytes());
  Napi::MemoryManagement::AdjustExternalMemory(env, externalBytes_);  // lets V8's GC see the native weights
}

MoeLayerBinding::~MoeLayerBinding() {
  // Collected without dispose(): give back the external-memory hint too (no JS runs here).
  if (layer_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -externalBytes_);
}

const std::shared_ptr<const MoeLayer>& MoeLayerBinding::requireLayer(Napi::Env env) const {
  if (!layer_) throwJs(env, code::kDisposed, "this MoELayer was disposed; create a new one with MoELayer.fromWeights");
  return layer_;
}

void MoeLayerBinding::release(Napi::Env env) {
  if (!layer_) return;
  layer_.reset();
  Napi::MemoryManagement::AdjustExternalMemory(env, -externalBytes_);
  externalBytes_ = 0;
}

// Reads forward()/profile() arguments: x, { tokens, policy }.
MoeLayerBinding::ForwardArguments MoeLayerBinding::readForwardArguments(const Napi::CallbackInfo& info) const {
  Napi::Env env = info.Env();
  const std::shared_ptr<const MoeLayer>& layer = requireLayer(env);
  const MoeLayerConfig& config = layer->config();
  Napi::Object options = requireObject(info[1], "forward options");
  const int tokens = readInt(options, "tokens", 1, 1 << 24);
  if (static_cast<double>(tokens) * config.hidden > static_cast<double>(1u << 31)) {
    throwJs(env, code::kShape, "tokens * hidden must stay below 2^31");
  }
  Napi::Float32Array x = requireFloat32Array(info[0], static_cast<size_t>(tokens) * config.hidden, "x");
  const RoutingPolicy policy = readPolicy(options.Get("policy"), config.routedSlots());
  translateErrors(env, [&] { validateRouterRule(config.router, policy, config.routedSlots()); });
  return {layer, x, tokens, policy, options};
}

Napi::Value MoeLayerBinding::forward(const Napi::CallbackInfo& info) {
  const ForwardArguments args = readForwardArguments(info);
  auto* worker = new ForwardWorker(info.Env(), args.layer, args.x, args.tokens, args.policy);
  return worker->start();
}

Napi::Value MoeLayerBinding::profile(const Napi::CallbackInfo& info) {
  const ForwardArguments args = readForwardArguments(info);
  const int runs = readInt(args.options, "runs", 1, 10000);  // the TypeScript layer supplies the default
  if (std::string(args.layer->device()) != "cuda") {
    throwJs(info.Env(), code::kUnsupported, "profile() times the stages of a layer on device 'cuda'; this layer is on the CPU");
  }
  auto* worker = new ProfileWorker(info.Env(), args.layer, args.x, args.tokens, args.policy, runs);
  return worker->start();
}

Napi::Value MoeLayerBinding::pack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* worker = new PackWorker(env, readMoeLayerSources(info[0]));
  return worker->start();
}

Napi::Value MoeLayerBinding::dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value MoeLayerBinding::weightBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(requireLayer(info.Env())->weightBytes()));
}

Napi::Value MoeLayerBinding::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), requireLayer(info.Env())->device());
}

Napi::Value MoeLayerBinding::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !layer_);
}

}  // namespace dynamoe
