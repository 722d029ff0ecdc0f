#include "moe_layer_sources.h"

#include <string>

#include "backends.h"
#include "js_args.h"
#include "js_errors.h"

namespace dynamoe {

namespace {

constexpr int kMaxDimension = 1 << 20;

class SourceReader {
 public:
  explicit SourceReader(MoeLayerSources& sources) : sources_(sources) {}

  MatrixSource weights(const Napi::Value& value, int rows, int cols, const std::string& what) {
    MatrixSource source = requireWeights(value, rows, cols, sources_.weights.config.dtype, what);
    // Kept alive while the layer packs; for quantized blocks, the object holding them.
    sources_.arrays.push_back(Napi::Persistent(value.As<Napi::Object>()));
    return source;
  }

  const float* floats(const Napi::Value& value, size_t length, const std::string& what) {
    const float* data = requireFloat32Array(value, length, what).Data();
    sources_.arrays.push_back(Napi::Persistent(value.As<Napi::Object>()));
    return data;
  }

  // Per-expert [rows][cols] matrices given as an array of `experts` weight matrices.
  std::vector<MatrixSource> perExpert(const Napi::Object& options, const char* key, int rows, int cols) {
    const int experts = sources_.weights.config.experts;
    Napi::Value value = options.Get(key);
    if (!value.IsArray() || value.As<Napi::Array>().Length() != static_cast<uint32_t>(experts)) {
      throwJs(options.Env(), code::kShape,
              std::string(key) + " must be an array of " + std::to_string(experts) + " per-expert typed arrays");
    }
    Napi::Array array = value.As<Napi::Array>();
    std::vector<MatrixSource> matrices;
    for (int e = 0; e < experts; ++e) {
      matrices.push_back(weights(array.Get(static_cast<uint32_t>(e)), rows, cols,
                                 std::string(key) + "[" + std::to_string(e) + "]"));
    }
    return matrices;
  }

 private:
  MoeLayerSources& sources_;
};

}  // namespace

MoeLayerSources readMoeLayerSources(const Napi::Value& value) {
  Napi::Env env = value.Env();
  Napi::Object options = requireObject(value, "MoELayer options");
  MoeLayerSources sources;
  MoeLayerConfig& config = sources.weights.config;
  config.hidden = readInt(options, "hidden", 1, kMaxDimension);
  config.ffn = readInt(options, "ffn", 1, kMaxDimension);
  config.experts = readInt(options, "experts", 1, 1 << 16);
  Napi::Value dtype = options.Get("dtype");
  if (!dtype.IsString() || !parseDType(dtype.As<Napi::String>().Utf8Value(), &config.dtype)) {
    throwJs(env, code::kDtype, "dtype must be 'f32', 'f16' or 'bf16'");
  }
  sources.backend = &backendForDevice(options.Get("device"));
  translateErrors(env, [&] { sources.backend->requireUsable(); });  // fail before reading weights
  if (!options.Get("zeroExperts").IsUndefined()) {
    Napi::Object zero = requireObject(options.Get("zeroExperts"), "zeroExperts");
    config.zeroExperts = readInt(zero, "count", 0, 1 << 16);
    Napi::Value kind = zero.Get("kind");
    const std::string name = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
    if (name != "zero" && name != "identity") {
      throwJs(env, code::kType, "zeroExperts.kind must be 'zero' or 'identity', got " + describe(kind));
    }
    config.zeroKind = name == "zero" ? ZeroExpertKind::Zero : ZeroExpertKind::Identity;
  }
  config.router = readRouterRule(options.Get("routerRule"), config.routedSlots(), "routerRule");
  SourceReader read(sources);
  if (config.router.selectionBias != nullptr) {
    read.floats(options.Get("routerRule").As<Napi::Object>().Get("selectionBias"), config.routedSlots(),
                "routerRule.selectionBias");
  }
  sources.weights.router =
      read.floats(options.Get("router"), static_cast<size_t>(config.routedSlots()) * config.hidden, "router");
  const auto gate = read.perExpert(options, "gate", config.ffn, config.hidden);
  const auto up = read.perExpert(options, "up", config.ffn, config.hidden);
  const auto down = read.perExpert(options, "down", config.hidden, config.ffn);
  for (int e = 0; e < config.experts; ++e) sources.weights.experts.push_back({gate[e], up[e], down[e]});
  readMoeBiasesAndActivation(options, sources);

  MoeWeights& weights = sources.weights;
  weights.hasShared = !options.Get("shared").IsUndefined();
  if (weights.hasShared) {
    Napi::Object shared = requireObject(options.Get("shared"), "shared");
    weights.shared.ffn = readInt(shared, "ffn", 1, kMaxDimension);
    const int sharedFfn = weights.shared.ffn;
    weights.shared.weights = {read.weights(shared.Get("gate"), sharedFfn, config.hidden, "shared.gate"),
                              read.weights(shared.Get("up"), sharedFfn, config.hidden, "shared.up"),
                              read.weights(shared.Get("down"), config.hidden, sharedFfn, "shared.down")};
    if (!shared.Get("gateWeight").IsUndefined()) {
      weights.shared.gateWeight = read.floats(shared.Get("gateWeight"), config.hidden, "shared.gateWeight");
    }
  }
  return sources;
}

}  // namespace dynamoe
