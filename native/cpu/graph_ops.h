// Factories of the ops a model graph is made of. Buffer arguments are indices into GraphStep::buffers.
#pragma once

#include <memory>
#include <vector>

#include "../core/backend.h"
#include "../core/graph.h"
#include "graph_op.h"
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

std::unique_ptr<GraphOp> makeRopeOp(int buffer, int heads, int headDim, double theta, RopeStyle style);

// Causal grouped-query attention over the step's rows and the cached positions before them; appends k and v
// to cache slot `slot`.
std::unique_ptr<GraphOp> makeAttentionOp(const AttentionNode& shape);

// out = a + b (the residual stream); out may be a.
std::unique_ptr<GraphOp> makeAddOp(int a, int b, int output, int width);

// Dense SwiGLU MLP: down(silu(gate x) * up x).
std::unique_ptr<GraphOp> makeDenseMlpOp(int input, int output, PackedMatrix gateUp, PackedMatrix down);

// The MoE block (a layer of any backend's making); its routing policy is the step's policies[slot].
std::unique_ptr<GraphOp> makeMoeOp(int input, int output, int slot, std::shared_ptr<const MoeLayer> layer);

}  // namespace dynamoe::cpu
