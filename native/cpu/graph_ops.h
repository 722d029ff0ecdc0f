// Factories of the ops a model graph is made of. Buffer arguments are indices into GraphStep::buffers.
#pragma once

#include <memory>
#include <vector>

#include "graph_op.h"
#include "moe_layer.h"
#include "packed_matrix.h"

namespace dynamoe::cpu {

// token ids -> rows of `table` ([vocab][hidden] packed by packColumns, shared with a tied LM head).
std::unique_ptr<GraphOp> makeEmbeddingOp(std::shared_ptr<const PackedMatrix> table, int vocab, int hidden,
                                         int output);

// RMSNorm over groups of `groupSize` columns (the whole row, or each attention head): x / rms(x) * weight.
std::unique_ptr<GraphOp> makeRmsNormOp(int input, int output, int width, int groupSize, std::vector<float> weight,
                                       float epsilon);

// out = in . W^T (+ bias); W packed by packColumns from [outFeatures][inFeatures].
std::unique_ptr<GraphOp> makeLinearOp(int input, int output, std::shared_ptr<const PackedMatrix> weights,
                                      int outFeatures, std::vector<float> bias);

// LM head: logits of every position, or of the last one only. `ownsWeights` is false when tied to the embedding.
std::unique_ptr<GraphOp> makeLogitsOp(int input, std::shared_ptr<const PackedMatrix> weights, int vocab,
                                      bool ownsWeights);

enum class RopeStyle {
  Halves,  // Hugging Face Llama family, GPT-NeoX: dimension i rotates with i + headDim / 2
  Pairs,   // GPT-J, llama.cpp's "llama" GGUFs (q/k rows permuted by the converter): 2i rotates with 2i + 1
};
std::unique_ptr<GraphOp> makeRopeOp(int buffer, int heads, int headDim, double theta, RopeStyle style);

// Causal grouped-query attention over the step's rows and the cached positions before them; appends k and v
// to cache slot `slot`.
struct AttentionShape {
  int query = 0, key = 0, value = 0, output = 0;  // buffers
  int heads = 0, kvHeads = 0, headDim = 0;
  int slot = 0;
};
std::unique_ptr<GraphOp> makeAttentionOp(const AttentionShape& shape);

// out = a + b (the residual stream); out may be a.
std::unique_ptr<GraphOp> makeAddOp(int a, int b, int output, int width);

// Dense SwiGLU MLP: down(silu(gate x) * up x).
std::unique_ptr<GraphOp> makeDenseMlpOp(int input, int output, PackedMatrix gateUp, PackedMatrix down);

// The MoE block; its routing policy is the step's policies[slot].
std::unique_ptr<GraphOp> makeMoeOp(int input, int output, int slot, std::shared_ptr<const MoeLayer> layer);

}  // namespace dynamoe::cpu
