// The graph description every backend executes: the activation buffers and caches of a model (its layout), the op
// kinds, and one typed node struct per op. The TypeScript graph builder sends these; a backend packs or uploads each
// node's weights and runs the ops in order.
#pragma once

#include <cmath>
#include <string>
#include <variant>
#include <vector>

#include "moe_config.h"

namespace dynamoe {

struct GraphLayout {
  std::vector<int> bufferWidths;  // floats per token of each activation buffer
  int vocab = 0;
  std::vector<int> kvWidths;      // per attention slot: floats of a position's key (kv heads x head dim)
  // Per attention slot: floats of a position's value; 0 when the slot keeps keys only (MLA's latent). Empty: the
  // kvWidths.
  std::vector<int> kvValueWidths;
  std::vector<int> moeExperts;    // per MoE slot: routed experts
};

// Buffer fields below are indices into GraphLayout::bufferWidths.

// token ids -> rows of `weight` ([vocab][hidden]; a tied LM head reuses it).
struct EmbeddingNode {
  int hidden = 0, output = 0;
  MatrixSource weight;
  float scale = 1.0f;  // rows times this (Granite's embedding_multiplier); 1: the rows as stored
};

// LM head: logits of every position (or of the last one only, per step), or log-probabilities at target ids.
struct LogitsNode {
  int hidden = 0, input = 0;
  bool tied = false;    // reads the embedding node's table (which must come first) instead of `weight`
  MatrixSource weight;  // [vocab][hidden] when not tied
  float scale = 1.0f;   // logits times this (Granite: 1 / logits_scaling); 1: as the head computes them
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
  // Chunked attention (Llama 4's RoPE layers): a query at position i sees keys j <= i of its own chunk,
  // floor(j / chunk) == floor(i / chunk) (0: none; never with a window).
  int chunk = 0;
  // Attention temperature (Llama 4's NoPE layers): a query at position i scores times
  // 1 + temperatureScale * log(1 + floor((i + 1) / temperatureFloor)) (temperatureFloor 0: none).
  int temperatureFloor = 0;
  float temperatureScale = 0.0f;
  // Attention sinks ([heads] or empty): a learned logit per head that joins each row's softmax denominator only.
  std::vector<float> sinks;
  // The softmax scale of q . k; 0: 1 / sqrt(headDim) (Granite's attention_multiplier replaces it).
  float scale = 0.0f;
};

// The first position a query at `position` sees: a window's or a chunk's start (AttentionNode).
inline int firstVisiblePosition(int position, int window, int chunk) {
  if (chunk > 0) return position / chunk * chunk;
  return window > 0 ? (position + 1 > window ? position + 1 - window : 0) : 0;
}

// AttentionNode's temperature at `position`, in float as Llama 4 computes it (1 without one).
inline float attentionTemperature(int position, int floor, float scale) {
  if (floor <= 0) return 1.0f;
  return 1.0f + scale * static_cast<float>(std::log1p(static_cast<double>((position + 1) / floor)));
}

// Multi-head latent attention (DeepSeek-V2 MLA), causal, in its absorbed form: the cache slot holds one latent row
// per position, [latent (kvLoraRank, normed) | keyRope (ropeDim, roped)], shared by every head, and no values.
// Each head's query is taken into the latent space (queryNope . W_uk), scored against the latent rows together with
// queryRope . keyRope, and its softmax-weighted latent is taken out by W_uv. Appends the step's latent rows to `slot`.
struct MlaAttentionNode {
  int queryNope = 0, queryRope = 0, latent = 0, keyRope = 0, output = 0;
  int heads = 0, nopeDim = 0, ropeDim = 0, kvLoraRank = 0, valueDim = 0;
  int slot = 0;
  float scale = 0.0f;    // of the scores: 1 / sqrt(nopeDim + ropeDim), times YaRN's mscale^2 where that applies
  MatrixSource keyUp;    // [heads * kvLoraRank][nopeDim]: each head's W_uk transposed (llama.cpp's attn_k_b)
  MatrixSource valueUp;  // [heads * valueDim][kvLoraRank]: each head's W_uv (llama.cpp's attn_v_b)
};

// out = a + scale * b (the residual stream; Granite's residual_multiplier scales b); out may be a.
struct AddNode {
  int a = 0, b = 0, output = 0, width = 0;
  float scale = 1.0f;
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
enum class OpKind { Embedding, Logits, Linear, RmsNorm, Rope, Attention, Add, Mlp, Moe, MlaAttention };
using GraphNode = std::variant<EmbeddingNode, LogitsNode, LinearNode, RmsNormNode, RopeNode, AttentionNode, AddNode,
                               MlpNode, MoeNode, MlaAttentionNode>;

inline OpKind opKind(const GraphNode& node) { return static_cast<OpKind>(node.index()); }

// The op names of the graph protocol ("embedding", "rms_norm", ...).
const char* opName(OpKind kind);
// Returns false when `name` is no op.
bool parseOpKind(const std::string& name, OpKind* out);

}  // namespace dynamoe
