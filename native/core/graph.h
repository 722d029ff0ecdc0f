// The graph description every backend executes: the activation buffers and caches of a model (its layout), the op
// kinds, and one typed node struct per op. The TypeScript graph builder sends these; a backend packs or uploads each
// node's weights and runs the ops in order.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "moe_config.h"

namespace dynamoe {

struct GraphLayout {
  std::vector<int> bufferWidths;  // floats per token of each activation buffer
  int vocab = 0;
  std::vector<int> kvWidths;      // per attention slot: kv heads x head dim
  std::vector<int> moeExperts;    // per MoE slot: routed experts
};

// Buffer fields below are indices into GraphLayout::bufferWidths.

// token ids -> rows of `weight` ([vocab][hidden]; a tied LM head reuses it).
struct EmbeddingNode {
  int hidden = 0, output = 0;
  MatrixSource weight;
};

// LM head: logits of every position (or of the last one only, per step), or log-probabilities at target ids.
struct LogitsNode {
  int hidden = 0, input = 0;
  bool tied = false;    // reads the embedding node's table (which must come first) instead of `weight`
  MatrixSource weight;  // [vocab][hidden] when not tied
};

// out = in . W^T (+ bias).
struct LinearNode {
  int inFeatures = 0, outFeatures = 0, input = 0, output = 0;
  MatrixSource weight;      // [outFeatures][inFeatures]
  std::vector<float> bias;  // [outFeatures] or empty
};

// RMSNorm over groups of `groupSize` columns (the whole row, or each attention head): x / rms(x) * weight.
struct RmsNormNode {
  int width = 0, groupSize = 0, input = 0, output = 0;
  std::vector<float> weight;  // [groupSize]
  float epsilon = 1e-6f;
};

enum class RopeStyle {
  Halves,  // Hugging Face Llama family, GPT-NeoX: dimension i rotates with i + headDim / 2
  Pairs,   // GPT-J, llama.cpp's "llama" GGUFs (q/k rows permuted by the converter): 2i rotates with 2i + 1
};

// Rotary position embedding of `buffer` in place, at the step's positions.
struct RopeNode {
  int buffer = 0, heads = 0, headDim = 0;
  int rotaryDim = 0;  // leading dimensions of each head that rotate (partial rotary, GLM-4.5); the rest pass through
  double theta = 10000.0;
  RopeStyle style = RopeStyle::Halves;
  // A scaled RoPE (YaRN): each rotated pair's inverse frequency ([rotaryDim / 2], replacing theta's) and a factor on
  // cos and sin. Empty and 1 for the plain rotation.
  std::vector<double> inverseFrequencies;
  double scale = 1.0;
};

// Causal grouped-query attention over the step's rows and the cached positions before them; appends k and v to
// cache slot `slot`.
struct AttentionNode {
  int query = 0, key = 0, value = 0, output = 0;
  int heads = 0, kvHeads = 0, headDim = 0;
  int slot = 0;
  // Sliding window: a query at position i sees keys at i - window < j <= i (0: every earlier position).
  int window = 0;
  // Attention sinks ([heads] or empty): a learned logit per head that joins each row's softmax denominator only.
  std::vector<float> sinks;
};

// out = a + b (the residual stream); out may be a.
struct AddNode {
  int a = 0, b = 0, output = 0, width = 0;
};

// Dense SwiGLU MLP: down(silu(gate x) * up x).
struct MlpNode {
  int hidden = 0, ffn = 0, input = 0, output = 0;
  MatrixSource gate, up;  // [ffn][hidden]
  MatrixSource down;      // [hidden][ffn]
};

// The MoE block; its routing policy is the step's policies[slot].
struct MoeNode {
  int input = 0, output = 0, slot = 0;
  MoeWeights weights;
};

// The op kinds, in the order of GraphNode's alternatives.
enum class OpKind { Embedding, Logits, Linear, RmsNorm, Rope, Attention, Add, Mlp, Moe };
using GraphNode =
    std::variant<EmbeddingNode, LogitsNode, LinearNode, RmsNormNode, RopeNode, AttentionNode, AddNode, MlpNode, MoeNode>;

inline OpKind opKind(const GraphNode& node) { return static_cast<OpKind>(node.index()); }

// The op names of the graph protocol ("embedding", "rms_norm", ...).
const char* opName(OpKind kind);
// Returns false when `name` is no op.
bool parseOpKind(const std::string& name, OpKind* out);

}  // namespace dynamoe
