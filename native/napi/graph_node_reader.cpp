#include "graph_node_reader.h"

#include <cmath>
#include <limits>
#include <string>

#include "js_args.h"
#include "js_errors.h"
#include "moe_layer_sources.h"

namespace dynamoe {

namespace {

constexpr int kMaxDimension = 1 << 20;

class NodeReader {
 public:
  NodeReader(const Napi::Object& node, const GraphLayout& layout, DType dtype, ReadNode& read)
      : node_(node), layout_(layout), dtype_(dtype), read_(read), op_(readString("op")) {}

  const std::string& op() const { return op_; }
  Napi::Env env() const { return node_.Env(); }

  std::string readString(const char* key) const {
    Napi::Value value = node_.Get(key);
    if (!value.IsString()) throwJs(env(), code::kType, std::string("graph node ") + key + " must be a string");
    return value.As<Napi::String>().Utf8Value();
  }
  int dimension(const char* key) const { return readInt(node_, key, 1, kMaxDimension); }

  // A buffer index whose width must be `width` (when width > 0).
  int buffer(const char* key, int width) const {
    const int index = readInt(node_, key, 0, static_cast<int>(layout_.bufferWidths.size()) - 1);
    if (width > 0 && layout_.bufferWidths[index] != width) {
      fail(std::string(key) + " buffer " + std::to_string(index) + " holds " +
           std::to_string(layout_.bufferWidths[index]) + " floats per token, the op needs " + std::to_string(width));
    }
    return index;
  }

  MatrixSource matrix(const char* key, int rows, int cols) {
    MatrixSource source = requireWeights(node_.Get(key), rows, cols, dtype_, op_ + "." + key);
    Napi::Value value = node_.Get(key);
    keep(source.quant == QuantType::None ? value : value.As<Napi::Object>().Get("data"));
    return source;
  }

  std::vector<float> floats(const char* key, size_t length) const {
    Napi::Float32Array array = requireFloat32Array(node_.Get(key), length, op_ + "." + key);
    return std::vector<float>(array.Data(), array.Data() + length);
  }

  // A Float64Array of `length` finite values.
  std::vector<double> doubles(const char* key, size_t length) const {
    Napi::Value value = node_.Get(key);
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      throwJs(env(), code::kType, op_ + "." + key + " must be a Float64Array, got " + describe(value));
    }
    Napi::Float64Array array = value.As<Napi::Float64Array>();
    if (array.ElementLength() != length) {
      fail(std::string(key) + " must have " + std::to_string(length) + " values, got " +
           std::to_string(array.ElementLength()));
    }
    std::vector<double> out(array.Data(), array.Data() + length);
    for (double v : out) {
      if (!std::isfinite(v)) throwJs(env(), code::kValue, op_ + "." + key + " must be finite");
    }
    return out;
  }

  // An optional positive finite number (a scale), `fallback` when absent.
  float positive(const Napi::Object& node, const char* key, double fallback) const {
    const double value = readNumber(node, key, fallback);
    if (!(value > 0) || !std::isfinite(value) || !std::isfinite(static_cast<float>(value))) {
      fail(std::string(key) + " must be a positive finite number");
    }
    return static_cast<float>(value);
  }

  [[noreturn]] void fail(const std::string& message) const { throwJs(env(), code::kShape, op_ + " node: " + message); }

 private:
  void keep(const Napi::Value& value) { read_.arrays.push_back(Napi::Persistent(value.As<Napi::Object>())); }

  Napi::Object node_;
  const GraphLayout& layout_;
  DType dtype_;
  ReadNode& read_;
  std::string op_;
};

EmbeddingNode readEmbedding(NodeReader& r, const GraphLayout& layout, const Napi::Object& node) {
  EmbeddingNode n;
  n.hidden = r.dimension("hidden");
  n.output = r.buffer("output", n.hidden);
  n.weight = r.matrix("weight", layout.vocab, n.hidden);
  n.scale = r.positive(node, "scale", 1.0);
  return n;
}

LogitsNode readLogits(NodeReader& r, const GraphLayout& layout, const Napi::Object& node) {
  LogitsNode n;
  n.hidden = r.dimension("hidden");
  n.input = r.buffer("input", n.hidden);
  n.tied = readBool(node, "tied", false);
  if (!n.tied) n.weight = r.matrix("weight", layout.vocab, n.hidden);
  n.scale = r.positive(node, "scale", 1.0);
  return n;
}

LinearNode readLinear(NodeReader& r, const Napi::Object& node) {
  LinearNode n;
  n.inFeatures = r.dimension("inFeatures");
  n.outFeatures = r.dimension("outFeatures");
  n.input = r.buffer("input", n.inFeatures);
  n.output = r.buffer("output", n.outFeatures);
  if (n.input == n.output) r.fail("input and output must be different buffers");
  n.weight = r.matrix("weight", n.outFeatures, n.inFeatures);
  if (!node.Get("bias").IsUndefined()) n.bias = r.floats("bias", n.outFeatures);
  return n;
}

RmsNormNode readRmsNorm(NodeReader& r, const Napi::Object& node) {
  RmsNormNode n;
  n.width = r.dimension("width");
  n.groupSize = r.dimension("groupSize");
  if (n.width % n.groupSize != 0) r.fail("width " + std::to_string(n.width) + " is not a multiple of groupSize");
  n.input = r.buffer("input", n.width);
  n.output = r.buffer("output", n.width);
  n.weight = r.floats("weight", n.groupSize);
  const double epsilon = readNumber(node, "epsilon", 1e-6);
  if (!(epsilon > 0)) r.fail("epsilon must be positive");
  n.epsilon = static_cast<float>(epsilon);
  return n;
}

RopeNode readRope(NodeReader& r, const Napi::Object& node) {
  RopeNode n;
  n.heads = r.dimension("heads");
  n.headDim = r.dimension("headDim");
  if (n.headDim % 2 != 0) r.fail("headDim must be even");
  n.buffer = r.buffer("buffer", n.heads * n.headDim);
  n.rotaryDim = readInt(node, "rotaryDim", 2, n.headDim, n.headDim);
  if (n.rotaryDim % 2 != 0) r.fail("rotaryDim must be even");
  n.theta = readNumber(node, "theta", 10000.0);
  if (!(n.theta > 1.0)) r.fail("theta must be greater than 1");
  const std::string style = r.readString("style");
  if (style != "halves" && style != "pairs") r.fail("style must be 'halves' or 'pairs'");
  n.style = style == "halves" ? RopeStyle::Halves : RopeStyle::Pairs;
  if (!node.Get("inverseFrequencies").IsUndefined()) n.inverseFrequencies = r.doubles("inverseFrequencies", n.rotaryDim / 2);
  n.scale = readNumber(node, "scale", 1.0);
  if (!(n.scale > 0)) r.fail("scale must be positive");
  return n;
}

AttentionNode readAttention(NodeReader& r, const GraphLayout& layout, const Napi::Object& node) {
  AttentionNode s;
  s.heads = r.dimension("heads");
  s.kvHeads = r.dimension("kvHeads");
  s.headDim = r.dimension("headDim");
  if (s.heads % s.kvHeads != 0) r.fail("heads must be a multiple of kvHeads");
  s.query = r.buffer("query", s.heads * s.headDim);
  s.key = r.buffer("key", s.kvHeads * s.headDim);
  s.value = r.buffer("value", s.kvHeads * s.headDim);
  s.output = r.buffer("output", s.heads * s.headDim);
  if (s.output == s.query) r.fail("output must not be the query buffer");
  s.slot = readInt(node, "slot", 0, static_cast<int>(layout.kvWidths.size()) - 1);
  if (layout.kvWidths[s.slot] != s.kvHeads * s.headDim) r.fail("cache slot width does not match kvHeads * headDim");
  if (!layout.kvValueWidths.empty() && layout.kvValueWidths[s.slot] != s.kvHeads * s.headDim) {
    r.fail("cache slot value width does not match kvHeads * headDim");
  }
  s.window = readInt(node, "window", 0, std::numeric_limits<int>::max(), 0);
  s.chunk = readInt(node, "chunk", 0, std::numeric_limits<int>::max(), 0);
  if (s.window > 0 && s.chunk > 0) r.fail("window and chunk cannot both be set");
  s.temperatureFloor = readInt(node, "temperatureFloor", 0, std::numeric_limits<int>::max(), 0);
  if (s.temperatureFloor > 0) {
    const double scale = readNumber(node, "temperatureScale", 0.0);
    if (!std::isfinite(scale)) r.fail("temperatureScale must be finite");
    s.temperatureScale = static_cast<float>(scale);
  }
  if (!node.Get("sinks").IsUndefined()) s.sinks = r.floats("sinks", s.heads);
  if (!node.Get("scale").IsUndefined()) s.scale = r.positive(node, "scale", 1.0);
  return s;
}

MlaAttentionNode readMlaAttention(NodeReader& r, const GraphLayout& layout, const Napi::Object& node) {
  MlaAttentionNode s;
  s.heads = r.dimension("heads");
  s.nopeDim = r.dimension("nopeDim");
  s.ropeDim = r.dimension("ropeDim");
  s.kvLoraRank = r.dimension("kvLoraRank");
  s.valueDim = r.dimension("valueDim");
  if (s.ropeDim % 2 != 0) r.fail("ropeDim must be even");  // RoPE rotates pairs
  // Products below stay in int range: every buffer is at most kMaxDimension floats wide anyway.
  for (int perHead : {s.nopeDim, s.ropeDim, s.valueDim, s.kvLoraRank}) {
    if (static_cast<int64_t>(s.heads) * perHead > kMaxDimension) r.fail("heads x head width is too large");
  }
  s.queryNope = r.buffer("queryNope", s.heads * s.nopeDim);
  s.queryRope = r.buffer("queryRope", s.heads * s.ropeDim);
  s.latent = r.buffer("latent", s.kvLoraRank);
  s.keyRope = r.buffer("keyRope", s.ropeDim);
  s.output = r.buffer("output", s.heads * s.valueDim);
  for (int input : {s.queryNope, s.queryRope, s.latent, s.keyRope}) {
    if (input == s.output) r.fail("output must not be an input buffer");
  }
  s.slot = readInt(node, "slot", 0, static_cast<int>(layout.kvWidths.size()) - 1);
  if (layout.kvWidths[s.slot] != s.kvLoraRank + s.ropeDim) {
    r.fail("cache slot width does not match kvLoraRank + ropeDim");
  }
  const double scale = readNumber(node, "scale", 1.0 / std::sqrt(static_cast<double>(s.nopeDim + s.ropeDim)));
  if (!(scale > 0) || !std::isfinite(scale)) r.fail("scale must be a positive finite number");
  s.scale = static_cast<float>(scale);
  s.keyUp = r.matrix("keyUp", s.heads * s.kvLoraRank, s.nopeDim);
  s.valueUp = r.matrix("valueUp", s.heads * s.valueDim, s.kvLoraRank);
  return s;
}

AddNode readAdd(NodeReader& r, const Napi::Object& node) {
  AddNode n;
  n.width = r.dimension("width");
  n.a = r.buffer("a", n.width);
  n.b = r.buffer("b", n.width);
  n.output = r.buffer("output", n.width);
  n.scale = r.positive(node, "scale", 1.0);
  return n;
}

MlpNode readMlp(NodeReader& r) {
  MlpNode n;
  n.hidden = r.dimension("hidden");
  n.ffn = r.dimension("ffn");
  n.input = r.buffer("input", n.hidden);
  n.output = r.buffer("output", n.hidden);
  if (n.input == n.output) r.fail("input and output must be different buffers");
  n.gate = r.matrix("gate", n.ffn, n.hidden);
  n.up = r.matrix("up", n.ffn, n.hidden);
  n.down = r.matrix("down", n.hidden, n.ffn);
  return n;
}

MoeNode readMoe(NodeReader& r, const GraphLayout& layout, DType dtype, const Napi::Object& node, ReadNode& read) {
  MoeLayerSources sources = readMoeLayerSources(node);
  MoeNode n;
  n.weights = std::move(sources.weights);
  if (n.weights.config.dtype != dtype) r.fail("dtype must be the model's dtype");
  n.slot = readInt(node, "slot", 0, static_cast<int>(layout.moeExperts.size()) - 1);
  if (layout.moeExperts[n.slot] != n.weights.config.routedSlots()) {
    r.fail("experts + zero experts do not match the layout's MoE slot");
  }
  n.input = r.buffer("input", n.weights.config.hidden);
  n.output = r.buffer("output", n.weights.config.hidden);
  if (n.input == n.output) r.fail("input and output must be different buffers");
  for (auto& array : sources.arrays) read.arrays.push_back(std::move(array));
  return n;
}

}  // namespace

ReadNode readGraphNode(const Napi::Value& value, const GraphLayout& layout, DType dtype) {
  Napi::Object node = requireObject(value, "graph node");
  ReadNode read;
  NodeReader r(node, layout, dtype, read);
  OpKind kind;
  if (!parseOpKind(r.op(), &kind)) throwJs(value.Env(), code::kType, "unknown graph op '" + r.op() + "'");
  switch (kind) {
    case OpKind::Embedding: read.node = readEmbedding(r, layout, node); break;
    case OpKind::Logits: read.node = readLogits(r, layout, node); break;
    case OpKind::Linear: read.node = readLinear(r, node); break;
    case OpKind::RmsNorm: read.node = readRmsNorm(r, node); break;
    case OpKind::Rope: read.node = readRope(r, node); break;
    case OpKind::Attention: read.node = readAttention(r, layout, node); break;
    case OpKind::Add: read.node = readAdd(r, node); break;
    case OpKind::Mlp: read.node = readMlp(r); break;
    case OpKind::Moe: read.node = readMoe(r, layout, dtype, node, read); break;
    case OpKind::MlaAttention: read.node = readMlaAttention(r, layout, node); break;
  }
  return read;
}

}  // namespace dynamoe
