// The optional parts of MoELayer options a gpt-oss layer adds (the router bias, per-expert projection biases and the
// experts' activation) and Llama 4's routing weights on the experts' input. Read after the weights, so the expert sources exist to attach the biases to.
#include <cmath>
#include <string>

#include "js_args.h"
#include "js_errors.h"
#include "moe_layer_sources.h"

namespace dynamoe {

namespace {

// Each expert's bias of `length` floats, from an array of `experts` Float32Arrays under `key`; null when absent.
void readPerExpertBias(const Napi::Object& options, const char* key, size_t length, MoeLayerSources& sources,
                       const float* ExpertSources::*field) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined()) return;
  const int experts = sources.weights.config.experts;
  if (!value.IsArray() || value.As<Napi::Array>().Length() != static_cast<uint32_t>(experts)) {
    throwJs(options.Env(), code::kShape,
            std::string(key) + " must be an array of " + std::to_string(experts) + " per-expert Float32Arrays");
  }
  Napi::Array array = value.As<Napi::Array>();
  for (int e = 0; e < experts; ++e) {
    Napi::Value bias = array.Get(static_cast<uint32_t>(e));
    sources.weights.experts[e].*field =
        requireFloat32Array(bias, length, std::string(key) + "[" + std::to_string(e) + "]").Data();
    sources.arrays.push_back(Napi::Persistent(bias.As<Napi::Object>()));
  }
}

}  // namespace

void readMoeBiasesAndActivation(const Napi::Object& options, MoeLayerSources& sources) {
  MoeLayerConfig& config = sources.weights.config;
  Napi::Value routerBias = options.Get("routerBias");
  if (!routerBias.IsUndefined()) {
    sources.weights.routerBias = requireFloat32Array(routerBias, config.routedSlots(), "routerBias").Data();
    sources.arrays.push_back(Napi::Persistent(routerBias.As<Napi::Object>()));
  }
  readPerExpertBias(options, "gateBias", config.ffn, sources, &ExpertSources::gateBias);
  readPerExpertBias(options, "upBias", config.ffn, sources, &ExpertSources::upBias);
  readPerExpertBias(options, "downBias", config.hidden, sources, &ExpertSources::downBias);

  Napi::Value weightOnInput = options.Get("weightOnInput");
  if (!weightOnInput.IsUndefined()) {
    if (!weightOnInput.IsBoolean()) throwJs(options.Env(), code::kType, "weightOnInput must be a boolean, got " + describe(weightOnInput));
    config.weightOnInput = weightOnInput.As<Napi::Boolean>().Value();
  }
  if (config.weightOnInput) {
    const auto biased = [](const ExpertSources& e) { return e.gateBias || e.upBias || e.downBias; };
    bool anyBias = false;
    for (const ExpertSources& e : sources.weights.experts) anyBias |= biased(e);
    if (anyBias || config.zeroExperts > 0) {
      throwJs(options.Env(), code::kUnsupported, "weightOnInput cannot combine with expert biases or zero-computation experts");
    }
  }

  Napi::Value activation = options.Get("activation");
  if (activation.IsUndefined()) return;
  Napi::Object object = requireObject(activation, "activation");
  Napi::Value kind = object.Get("kind");
  const std::string name = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
  if (name == "swiglu") {
    config.activation = ExpertActivation::SwiGlu;
  } else if (name == "swiglu-oai") {
    config.activation = ExpertActivation::SwiGluOai;
    const double limit = readNumber(object, "limit", 7.0);
    const double alpha = readNumber(object, "alpha", 1.702);
    if (!(limit > 0) || !std::isfinite(limit)) throwJs(options.Env(), code::kValue, "activation.limit must be positive");
    if (!std::isfinite(alpha)) throwJs(options.Env(), code::kValue, "activation.alpha must be finite");
    config.activationLimit = static_cast<float>(limit);
    config.activationAlpha = static_cast<float>(alpha);
  } else {
    throwJs(options.Env(), code::kType, "activation.kind must be 'swiglu' or 'swiglu-oai', got " + describe(kind));
  }
}

}  // namespace dynamoe
