#include "graph_node_reader.h"

#include <string>

#include "js_args.h"
#include "js_errors.h"
#include "moe_layer_sources.h"

namespace dynamoe {

namespace {

constexpr int kMaxDimension = 1 << 20;

class NodeReader {
 public:
  NodeReader(const Napi::Object& node, const cpu::GraphLayout& layout, DType dtype, GraphNodeBuilder& builder)
      : node_(node), layout_(layout), dtype_(dtype), builder_(builder), op_(readString("op")) {}

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

  cpu::MatrixSource matrix(const char* key, size_t length) {
    cpu::MatrixSource source;
    source.data = requireWeights(node_.Get(key), length, dtype_, op_ + "." + key, &source.dtype);
    keep(node_.Get(key));
    return source;
  }

  std::vector<float> floats(const char* key, size_t length) const {
    Napi::Float32Array array = requireFloat32Array(node_.Get(key), length, op_ + "." + key);
    return std::vector<float>(array.Data(), array.Data() + length);
  }

  [[noreturn]] void fail(const std::string& message) const { throwJs(env(), code::kShape, op_ + " node: " + message); }

 private:
  void keep(const Napi::Value& value) { builder_.arrays.push_back(Napi::Persistent(value.As<Napi::Object>())); }

  Napi::Object node_;
  const cpu::GraphLayout& layout_;
  DType dtype_;
  GraphNodeBuilder& builder_;
  std::string op_;
};

using Build = std::function<std::unique_ptr<cpu::GraphOp>(GraphBuildState&)>;

Build readEmbedding(NodeReader& r, const cpu::GraphLayout& layout, DType dtype) {
  const int hidden = r.dimension("hidden");
  const int output = r.buffer("output", hidden);
  const int vocab = layout.vocab;
  const cpu::MatrixSource table = r.matrix("weight", static_cast<size_t>(vocab) * hidden);
  return [=](GraphBuildState& state) {
    state.embeddingTable = std::make_shared<const cpu::PackedMatrix>(cpu::packColumns(table, vocab, hidden, dtype));
    return cpu::makeEmbeddingOp(state.embeddingTable, vocab, hidden, output);
  };
}

Build readLogits(NodeReader& r, const cpu::GraphLayout& layout, DType dtype, const Napi::Object& node) {
  const int hidden = r.dimension("hidden");
  const int input = r.buffer("input", hidden);
  const int vocab = layout.vocab;
  if (readBool(node, "tied", false)) {
    return [=](GraphBuildState& state) {
      if (!state.embeddingTable) throw Error(code::kShape, "a tied LM head needs the embedding node first");
      return cpu::makeLogitsOp(input, state.embeddingTable, vocab, false);
    };
  }
  const cpu::MatrixSource weight = r.matrix("weight", static_cast<size_t>(vocab) * hidden);
  return [=](GraphBuildState&) {
    auto packed = std::make_shared<const cpu::PackedMatrix>(cpu::packColumns(weight, vocab, hidden, dtype));
    return cpu::makeLogitsOp(input, std::move(packed), vocab, true);
  };
}

Build readLinear(NodeReader& r, DType dtype, const Napi::Object& node) {
  const int in = r.dimension("inFeatures");
  const int out = r.dimension("outFeatures");
  const int input = r.buffer("input", in);
  const int output = r.buffer("output", out);
  if (input == output) r.fail("input and output must be different buffers");
  const cpu::MatrixSource weight = r.matrix("weight", static_cast<size_t>(out) * in);
  std::vector<float> bias = node.Get("bias").IsUndefined() ? std::vector<float>() : r.floats("bias", out);
  return [=](GraphBuildState&) {
    auto packed = std::make_shared<const cpu::PackedMatrix>(cpu::packColumns(weight, out, in, dtype));
    return cpu::makeLinearOp(input, output, std::move(packed), out, bias);
  };
}

Build readRmsNorm(NodeReader& r, const Napi::Object& node) {
  const int width = r.dimension("width");
  const int group = r.dimension("groupSize");
  if (width % group != 0) r.fail("width " + std::to_string(width) + " is not a multiple of groupSize");
  const int input = r.buffer("input", width);
  const int output = r.buffer("output", width);
  std::vector<float> weight = r.floats("weight", group);
  const double epsilon = readNumber(node, "epsilon", 1e-6);
  if (!(epsilon > 0)) r.fail("epsilon must be positive");
  return [=](GraphBuildState&) {
    return cpu::makeRmsNormOp(input, output, width, group, weight, static_cast<float>(epsilon));
  };
}

Build readRope(NodeReader& r, const Napi::Object& node) {
  const int heads = r.dimension("heads");
  const int headDim = r.dimension("headDim");
  if (headDim % 2 != 0) r.fail("headDim must be even");
  const int buffer = r.buffer("buffer", heads * headDim);
  const double theta = readNumber(node, "theta", 10000.0);
  if (!(theta > 1.0)) r.fail("theta must be greater than 1");
  const std::string style = r.readString("style");
  if (style != "halves" && style != "pairs") r.fail("style must be 'halves' or 'pairs'");
  const cpu::RopeStyle ropeStyle = style == "halves" ? cpu::RopeStyle::Halves : cpu::RopeStyle::Pairs;
  return [=](GraphBuildState&) { return cpu::makeRopeOp(buffer, heads, headDim, theta, ropeStyle); };
}

Build readAttention(NodeReader& r, const cpu::GraphLayout& layout, const Napi::Object& node) {
  cpu::AttentionShape s;
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
  return [=](GraphBuildState&) { return cpu::makeAttentionOp(s); };
}

Build readAdd(NodeReader& r) {
  const int width = r.dimension("width");
  const int a = r.buffer("a", width);
  const int b = r.buffer("b", width);
  const int output = r.buffer("output", width);
  return [=](GraphBuildState&) { return cpu::makeAddOp(a, b, output, width); };
}

Build readMlp(NodeReader& r, DType dtype) {
  const int hidden = r.dimension("hidden");
  const int ffn = r.dimension("ffn");
  const int input = r.buffer("input", hidden);
  const int output = r.buffer("output", hidden);
  if (input == output) r.fail("input and output must be different buffers");
  const size_t elements = static_cast<size_t>(ffn) * hidden;
  const cpu::MatrixSource gate = r.matrix("gate", elements);
  const cpu::MatrixSource up = r.matrix("up", elements);
  const cpu::MatrixSource down = r.matrix("down", elements);
  return [=](GraphBuildState&) {
    return cpu::makeDenseMlpOp(input, output, cpu::packGateUp(gate, up, ffn, hidden, dtype),
                               cpu::packColumns(down, hidden, ffn, dtype));
  };
}

Build readMoe(NodeReader& r, const cpu::GraphLayout& layout, DType dtype, const Napi::Object& node,
              GraphNodeBuilder& builder) {
  auto sources = std::make_shared<MoeLayerSources>(readMoeLayerSources(node));
  if (sources->config.dtype != dtype) r.fail("dtype must be the model's dtype");
  const int slot = readInt(node, "slot", 0, static_cast<int>(layout.moeExperts.size()) - 1);
  if (layout.moeExperts[slot] != sources->config.experts) r.fail("experts does not match the layout's MoE slot");
  const int input = r.buffer("input", sources->config.hidden);
  const int output = r.buffer("output", sources->config.hidden);
  if (input == output) r.fail("input and output must be different buffers");
  for (auto& array : sources->arrays) builder.arrays.push_back(std::move(array));
  sources->arrays.clear();
  return [=](GraphBuildState&) { return cpu::makeMoeOp(input, output, slot, sources->pack()); };
}

}  // namespace

GraphNodeBuilder readGraphNode(const Napi::Value& value, const cpu::GraphLayout& layout, DType dtype) {
  Napi::Object node = requireObject(value, "graph node");
  GraphNodeBuilder builder;
  NodeReader r(node, layout, dtype, builder);
  const std::string& op = r.op();
  if (op == "embedding") builder.build = readEmbedding(r, layout, dtype);
  else if (op == "logits") builder.build = readLogits(r, layout, dtype, node);
  else if (op == "linear") builder.build = readLinear(r, dtype, node);
  else if (op == "rms_norm") builder.build = readRmsNorm(r, node);
  else if (op == "rope") builder.build = readRope(r, node);
  else if (op == "attention") builder.build = readAttention(r, layout, node);
  else if (op == "add") builder.build = readAdd(r);
  else if (op == "mlp") builder.build = readMlp(r, dtype);
  else if (op == "moe") builder.build = readMoe(r, layout, dtype, node, builder);
  else throwJs(value.Env(), code::kType, "unknown graph op '" + op + "'");
  return builder;
}

}  // namespace dynamoe
