#include "token_choice_binding.h"

#include <cmath>
#include <string>
#include <vector>

#include "backends.h"
#include "js_args.h"
#include "js_errors.h"

namespace dynamoe {

namespace {

// A test hook on the JS thread: bounded so it cannot hold the event loop for long.
constexpr size_t kMaxChoiceLogits = size_t{1} << 22;

// `range` says the bounds in the error (JS's notation: "[0, 1)").
double readChoiceNumber(const Napi::Object& options, const char* key, double fallback, bool (*inRange)(double),
                        const char* range) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined()) return fallback;
  const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
  if (!(std::isfinite(number) && inRange(number))) {
    throwJs(options.Env(), code::kValue,
            std::string("choice.") + key + " must be in " + range + ", got " + describe(value));
  }
  return number;
}

}  // namespace

TokenChoice readTokenChoice(const Napi::Value& value, int vocab) {
  Napi::Object options = requireObject(value, "choice");
  TokenChoice choice;
  choice.limit = readInt(options, "limit", 1, vocab);
  choice.temperature = readChoiceNumber(options, "temperature", 0.0, [](double t) { return t >= 0.0; }, "[0, Infinity)");
  choice.topK = readInt(options, "topK", 0, INT32_MAX, 0);  // past the limit: every id
  choice.topP = readChoiceNumber(options, "topP", 1.0, [](double p) { return p > 0.0 && p <= 1.0; }, "(0, 1]");
  choice.uniform = readChoiceNumber(options, "uniform", 0.0, [](double u) { return u >= 0.0 && u < 1.0; }, "[0, 1)");
  return choice;
}

Napi::Value ChooseTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object shape = Napi::Object::New(env);
  shape.Set("vocab", info[1]);
  const int vocab = readInt(shape, "vocab", 1, 1 << 24);
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throwJs(env, code::kType, "logits must be a Float32Array, got " + describe(info[0]));
  }
  Napi::Float32Array logits = info[0].As<Napi::Float32Array>();
  if (logits.ElementLength() == 0 || logits.ElementLength() % vocab != 0 ||
      logits.ElementLength() > kMaxChoiceLogits) {
    throwJs(env, code::kShape, "logits must hold 1 or more whole rows of vocab values, at most 2^22 in all");
  }
  const size_t rows = logits.ElementLength() / vocab;
  if (!info[2].IsArray() || info[2].As<Napi::Array>().Length() != rows) {
    throwJs(env, code::kShape, "choices must be an array with one choice per row of logits");
  }
  std::vector<TokenChoice> choices;
  for (uint32_t r = 0; r < rows; ++r) choices.push_back(readTokenChoice(info[2].As<Napi::Array>().Get(r), vocab));
  const Backend& backend = backendForDevice(info[3]);
  Napi::Int32Array tokens = Napi::Int32Array::New(env, rows);
  translateErrors(env, [&] {
    backend.requireUsable();
    backend.chooseTokens(logits.Data(), static_cast<int>(rows), vocab, choices.data(), tokens.Data());
  });
  return tokens;
}

}  // namespace dynamoe
