#include "js_args.h"

#include <cmath>

#include "js_errors.h"

namespace dynamoe {

std::string describe(const Napi::Value& value) {
  if (value.IsUndefined()) return "undefined";
  if (value.IsNull()) return "null";
  if (value.IsTypedArray()) return "a typed array";
  if (value.IsArray()) return "an array";
  if (value.IsNumber()) return value.ToString().Utf8Value();  // JS formatting: 3, 0.5, NaN (not 3.000000)
  if (value.IsString()) return "'" + value.As<Napi::String>().Utf8Value() + "'";
  return "a value of type " + std::string(value.IsObject() ? "object" : "other");
}


int readInt(const Napi::Object& options, const char* key, int min, int max, int fallback) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined() && fallback >= 0) return fallback;
  const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
  if (!(std::floor(number) == number && number >= min && number <= max)) {
    throwJs(options.Env(), code::kShape,
            std::string(key) + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                "], got " + describe(value));
  }
  return static_cast<int>(number);
}

double readNumber(const Napi::Object& options, const char* key, double fallback) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined()) return fallback;
  const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(number)) {
    throwJs(options.Env(), code::kPolicy, std::string(key) + " must be a finite number, got " + describe(value));
  }
  return number;
}

bool readBool(const Napi::Object& options, const char* key, bool fallback) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined()) return fallback;
  if (!value.IsBoolean()) {
    throwJs(options.Env(), code::kType, std::string(key) + " must be a boolean, got " + describe(value));
  }
  return value.As<Napi::Boolean>().Value();
}

Napi::Object requireObject(const Napi::Value& value, const std::string& what) {
  if (!value.IsObject() || value.IsArray() || value.IsTypedArray()) {
    throwJs(value.Env(), code::kType, what + " must be an object, got " + describe(value));
  }
  return value.As<Napi::Object>();
}

Napi::Float32Array requireFloat32Array(const Napi::Value& value, size_t length, const std::string& what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throwJs(value.Env(), code::kType, what + " must be a Float32Array, got " + describe(value));
  }
  Napi::Float32Array array = value.As<Napi::Float32Array>();
  if (array.ElementLength() != length) {
    throwJs(value.Env(), code::kShape,
            what + " must have " + std::to_string(length) + " elements, got " + std::to_string(array.ElementLength()));
  }
  return array;
}

QuantType requireQuantType(const Napi::Value& value, const std::string& what) {
  QuantType type = QuantType::None;
  if (!value.IsString() || !parseQuantType(value.As<Napi::String>().Utf8Value(), &type)) {
    throwJs(value.Env(), code::kDtype,
            what + " must name a quantized type dynamoe runs: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, "
                   "q6_k, iq4_nl, iq4_xs or mxfp4, got " + describe(value));
  }
  return type;
}

MatrixSource requireWeights(const Napi::Value& value, size_t rows, size_t cols, DType dtype, const std::string& what) {
  Napi::Env env = value.Env();
  MatrixSource source;
  if (value.IsObject() && !value.IsTypedArray() && !value.IsArray()) {
    Napi::Object object = value.As<Napi::Object>();
    source.quant = requireQuantType(object.Get("quant"), what + ".quant");
    const QuantTraits traits = quantTraits(source.quant);
    if (cols % static_cast<size_t>(traits.blockElements) != 0) {
      throwJs(env, code::kShape,
              what + " has rows of " + std::to_string(cols) + " values, not a whole number of " + traits.name +
                  " blocks of " + std::to_string(traits.blockElements));
    }
    Napi::Value data = object.Get("data");
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throwJs(env, code::kType, what + ".data must be a Uint8Array of quantized blocks, got " + describe(data));
    }
    const size_t bytes = rows * (cols / traits.blockElements) * traits.blockBytes;
    if (data.As<Napi::Uint8Array>().ElementLength() != bytes) {
      throwJs(env, code::kShape,
              what + " must hold " + std::to_string(bytes) + " bytes (" + std::to_string(rows) + " rows of " +
                  std::to_string(cols) + " " + traits.name + " values), got " +
                  std::to_string(data.As<Napi::Uint8Array>().ElementLength()));
    }
    source.data = data.As<Napi::Uint8Array>().Data();
    return source;
  }
  if (!value.IsTypedArray()) {
    throwJs(env, code::kType, what + " must be a Float32Array, a Uint16Array or quantized blocks, got " + describe(value));
  }
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  if (array.TypedArrayType() == napi_float32_array) {
    source.dtype = DType::F32;
  } else if (array.TypedArrayType() == napi_uint16_array) {
    if (dtype == DType::F32) {
      throwJs(env, code::kDtype,
              what + " is a Uint16Array (f16/bf16 bit patterns) but the layer dtype is 'f32': pass a Float32Array");
    }
    source.dtype = dtype;
  } else {
    throwJs(env, code::kType, what + " must be a Float32Array or Uint16Array, got another typed array");
  }
  const size_t length = rows * cols;
  if (array.ElementLength() != length) {
    throwJs(env, code::kShape,
            what + " must have " + std::to_string(length) + " elements, got " + std::to_string(array.ElementLength()));
  }
  // TypedArrayOf::Data() also works for arrays backed by a SharedArrayBuffer.
  source.data = source.dtype == DType::F32 ? static_cast<const void*>(value.As<Napi::Float32Array>().Data())
                                           : static_cast<const void*>(value.As<Napi::Uint16Array>().Data());
  return source;
}

RoutingPolicy readPolicy(const Napi::Value& value, int experts) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) throwJs(env, code::kPolicy, "policy must be an object such as { kind: 'top-p', p: 0.4 }");
  Napi::Object options = value.As<Napi::Object>();
  Napi::Value kind = options.Get("kind");
  const std::string name = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
  RoutingPolicy policy;
  const auto readClamps = [&] {
    const double minExperts = readNumber(options, "minExperts", 1);
    const double maxExperts = readNumber(options, "maxExperts", experts);
    if (std::floor(minExperts) != minExperts || std::floor(maxExperts) != maxExperts) {
      throwJs(env, code::kPolicy, "minExperts and maxExperts must be integers");
    }
    policy.minExperts = static_cast<int>(std::max(-1.0, std::min(minExperts, 1e9)));
    policy.maxExperts = static_cast<int>(std::max(-1.0, std::min(maxExperts, 1e9)));
  };
  if (name == "top-k") {
    policy.kind = PolicyKind::TopK;
    const double k = readNumber(options, "k", NAN);
    if (std::floor(k) != k) throwJs(env, code::kPolicy, "top-k k must be an integer, got " + describe(options.Get("k")));
    policy.k = static_cast<int>(std::max(-1.0, std::min(k, 1e9)));
    policy.scale = static_cast<float>(readNumber(options, "scale", 1.0));
  } else if (name == "top-p") {
    policy.kind = PolicyKind::TopP;
    if (options.Get("p").IsUndefined()) throwJs(env, code::kPolicy, "top-p needs p, a number in (0, 1]");
    const double p = readNumber(options, "p", NAN);
    policy.p = static_cast<float>(p);
    readClamps();
  } else if (name == "threshold") {
    policy.kind = PolicyKind::Threshold;
    if (options.Get("tau").IsUndefined()) throwJs(env, code::kPolicy, "threshold needs tau, a number in [0, 1]");
    const double tau = readNumber(options, "tau", NAN);
    policy.tau = static_cast<float>(tau);
    readClamps();
  } else {
    throwJs(env, code::kPolicy,
            "policy.kind must be 'top-k', 'top-p' or 'threshold', got " + describe(kind));
  }
  policy.normalize = readBool(options, "normalize", false);
  translateErrors(env, [&] { validatePolicy(policy, experts); });  // the ranges: one rule set, in the core
  return policy;
}

RouterRule readRouterRule(const Napi::Value& value, int slots, const std::string& what) {
  RouterRule rule;
  if (value.IsUndefined()) return rule;
  Napi::Env env = value.Env();
  Napi::Object options = requireObject(value, what);
  Napi::Value scoring = options.Get("scoring");
  const std::string name = scoring.IsUndefined() ? "softmax" : scoring.IsString() ? scoring.As<Napi::String>().Utf8Value() : "";
  if (name == "softmax") {
    rule.scoring = RouterScoring::Softmax;
  } else if (name == "sigmoid") {
    rule.scoring = RouterScoring::Sigmoid;
  } else if (name == "softmax-of-kept") {
    rule.scoring = RouterScoring::SoftmaxOfKept;
  } else {
    throwJs(env, code::kPolicy, what + ".scoring must be 'softmax', 'sigmoid' or 'softmax-of-kept', got " + describe(scoring));
  }
  rule.groups = readInt(options, "groups", 0, slots, 0);
  rule.keptGroups = readInt(options, "keptGroups", 0, slots, rule.groups);
  Napi::Value groupScore = options.Get("groupScore");
  const std::string score = groupScore.IsString() ? groupScore.As<Napi::String>().Utf8Value() : "";
  if (!groupScore.IsUndefined() && score != "max" && score != "top2-sum") {
    throwJs(env, code::kPolicy, what + ".groupScore must be 'max' or 'top2-sum', got " + describe(groupScore));
  }
  rule.groupScore = score == "max" ? GroupScore::Max : GroupScore::Top2Sum;
  rule.normalize = readBool(options, "normalize", false);
  rule.scale = static_cast<float>(readNumber(options, "scale", 1.0));
  if (!options.Get("selectionBias").IsUndefined()) {
    Napi::Float32Array bias = requireFloat32Array(options.Get("selectionBias"), slots, what + ".selectionBias");
    for (size_t e = 0; e < bias.ElementLength(); ++e) {
      if (!std::isfinite(bias[e])) throwJs(env, code::kValue, what + ".selectionBias must be finite");
    }
    rule.selectionBias = bias.Data();
  }
  return rule;
}

RouterScores readRouterScores(const Napi::Value& scores, const Napi::Object& sizes) {
  RouterScores out;
  out.tokens = readInt(sizes, "tokens", 1, 1 << 24);
  out.experts = readInt(sizes, "experts", 1, 1 << 16);
  if (static_cast<double>(out.tokens) * out.experts >= static_cast<double>(1u << 31)) {
    throwJs(sizes.Env(), code::kShape, "tokens * experts must stay below 2^31");
  }
  out.scores = requireFloat32Array(scores, static_cast<size_t>(out.tokens) * out.experts, "logits");
  return out;
}

}  // namespace dynamoe
