#include "moe_layer_binding.h"

#include <vector>

#include "js_args.h"
#include "js_errors.h"
#include "promise_worker.h"
#include "routing_result.h"

namespace dynamoe {

namespace {

constexpr int kMaxDimension = 1 << 20;

// Per-expert matrices given as an array of `experts` typed arrays of `length` elements each.
std::vector<cpu::MatrixSource> readExpertMatrices(const Napi::Object& options, const char* key, int experts,
                                                  size_t length, DType dtype) {
  Napi::Value value = options.Get(key);
  if (!value.IsArray() || value.As<Napi::Array>().Length() != static_cast<uint32_t>(experts)) {
    throwJs(options.Env(), code::kShape,
            std::string(key) + " must be an array of " + std::to_string(experts) + " per-expert typed arrays");
  }
  Napi::Array array = value.As<Napi::Array>();
  std::vector<cpu::MatrixSource> sources(experts);
  for (int e = 0; e < experts; ++e) {
    const std::string what = std::string(key) + "[" + std::to_string(e) + "]";
    sources[e].data = requireWeights(array.Get(static_cast<uint32_t>(e)), length, dtype, what, &sources[e].dtype);
  }
  return sources;
}

cpu::ExpertSources readSingleExpert(const Napi::Object& options, int ffn, int hidden, DType dtype,
                                    const std::string& prefix) {
  cpu::ExpertSources sources;
  const size_t length = static_cast<size_t>(ffn) * hidden;
  sources.gate.data = requireWeights(options.Get("gate"), length, dtype, prefix + "gate", &sources.gate.dtype);
  sources.up.data = requireWeights(options.Get("up"), length, dtype, prefix + "up", &sources.up.dtype);
  sources.down.data = requireWeights(options.Get("down"), length, dtype, prefix + "down", &sources.down.dtype);
  return sources;
}

class ForwardWorker : public PromiseWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<const cpu::MoeLayer> layer, Napi::Float32Array x, int tokens,
                const RoutingPolicy& policy)
      : PromiseWorker(env),
        layer_(std::move(layer)),
        x_(x.Data(), x.Data() + x.ElementLength()),  // a copy: JS may change its array while we run
        tokens_(tokens),
        policy_(policy),
        routing_(env, tokens, layer_->config().experts, policy.kMax(layer_->config().experts)) {
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
  void run() override { layer_->forward(x_.data(), tokens_, policy_, output_, routing_.output(), counters_); }
  Napi::Value result(Napi::Env) override { return result_.Value(); }

 private:
  std::shared_ptr<const cpu::MoeLayer> layer_;
  std::vector<float> x_;
  int tokens_;
  RoutingPolicy policy_;
  RoutingResultArrays routing_;
  float* output_ = nullptr;
  cpu::WorkCounters counters_;
  Napi::ObjectReference result_;
};

}  // namespace

Napi::Function MoeLayerBinding::define(Napi::Env env) {
  return DefineClass(env, "MoeLayerBinding",
                     {InstanceMethod<&MoeLayerBinding::forward>("forward"),
                      InstanceMethod<&MoeLayerBinding::dispose>("dispose"),
                      InstanceAccessor<&MoeLayerBinding::weightBytes>("weightBytes"),
                      InstanceAccessor<&MoeLayerBinding::disposed>("disposed")});
}

MoeLayerBinding::MoeLayerBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MoeLayerBinding>(info) {
  Napi::Env env = info.Env();
  Napi::Object options = requireObject(info[0], "MoELayer options");
  cpu::MoeLayerConfig config;
  config.hidden = readInt(options, "hidden", 1, kMaxDimension);
  config.ffn = readInt(options, "ffn", 1, kMaxDimension);
  config.experts = readInt(options, "experts", 1, 1 << 16);
  Napi::Value dtype = options.Get("dtype");
  if (!dtype.IsString() || !parseDType(dtype.As<Napi::String>().Utf8Value(), &config.dtype)) {
    throwJs(env, code::kDtype, "dtype must be 'f32', 'f16' or 'bf16'");
  }
  const size_t expertElements = static_cast<size_t>(config.ffn) * config.hidden;
  const Napi::Float32Array router = requireFloat32Array(
      options.Get("router"), static_cast<size_t>(config.experts) * config.hidden, "router");
  const auto gate = readExpertMatrices(options, "gate", config.experts, expertElements, config.dtype);
  const auto up = readExpertMatrices(options, "up", config.experts, expertElements, config.dtype);
  const auto down = readExpertMatrices(options, "down", config.experts, expertElements, config.dtype);
  std::vector<cpu::ExpertSources> experts(config.experts);
  for (int e = 0; e < config.experts; ++e) experts[e] = {gate[e], up[e], down[e]};

  cpu::SharedExpertSources shared;
  const bool hasShared = !options.Get("shared").IsUndefined();
  if (hasShared) {
    Napi::Object sharedOptions = requireObject(options.Get("shared"), "shared");
    shared.ffn = readInt(sharedOptions, "ffn", 1, kMaxDimension);
    shared.weights = readSingleExpert(sharedOptions, shared.ffn, config.hidden, config.dtype, "shared.");
    if (!sharedOptions.Get("gateWeight").IsUndefined()) {
      shared.gateWeight = requireFloat32Array(sharedOptions.Get("gateWeight"), config.hidden, "shared.gateWeight").Data();
    }
  }
  translateErrors(env, [&] {
    layer_ = std::make_shared<const cpu::MoeLayer>(config, router.Data(), experts, hasShared ? &shared : nullptr);
  });
  externalBytes_ = static_cast<int64_t>(layer_->weightBytes());
  Napi::MemoryManagement::AdjustExternalMemory(env, externalBytes_);  // lets V8's GC see the native weights
}

MoeLayerBinding::~MoeLayerBinding() {
  // Finalizers may not call into JS; the external-memory hint is dropped with the object.
  layer_.reset();
}

const std::shared_ptr<const cpu::MoeLayer>& MoeLayerBinding::requireLayer(Napi::Env env) const {
  if (!layer_) throwJs(env, code::kDisposed, "this MoELayer was disposed; create a new one with MoELayer.fromWeights");
  return layer_;
}

void MoeLayerBinding::release(Napi::Env env) {
  if (!layer_) return;
  layer_.reset();
  Napi::MemoryManagement::AdjustExternalMemory(env, -externalBytes_);
  externalBytes_ = 0;
}

Napi::Value MoeLayerBinding::forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::shared_ptr<const cpu::MoeLayer>& layer = requireLayer(env);
  const cpu::MoeLayerConfig& config = layer->config();
  Napi::Object options = requireObject(info[1], "forward options");
  const int tokens = readInt(options, "tokens", 1, 1 << 24);
  if (static_cast<double>(tokens) * config.hidden > static_cast<double>(1u << 31)) {
    throwJs(env, code::kShape, "tokens * hidden must stay below 2^31");
  }
  Napi::Float32Array x = requireFloat32Array(info[0], static_cast<size_t>(tokens) * config.hidden, "x");
  const RoutingPolicy policy = readPolicy(options.Get("policy"), config.experts);
  auto* worker = new ForwardWorker(env, layer, x, tokens, policy);
  return worker->start();
}

Napi::Value MoeLayerBinding::dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value MoeLayerBinding::weightBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(requireLayer(info.Env())->weightBytes()));
}

Napi::Value MoeLayerBinding::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !layer_);
}

}  // namespace dynamoe
