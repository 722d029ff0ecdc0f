// Factories of the CPU ops a model graph is made of: one per op kind of the core's graph description (graph.h, which
// says what each op computes), each defined in its op file. Buffer fields of the nodes index GraphStep::buffers.
#pragma once

#include <memory>

#include "../core/backend.h"
#include "../core/graph.h"
#include "graph_op.h"
#include "packed_matrix.h"

namespace dynamoe::cpu {

// What a factory may use besides its node: the model the op joins.
struct OpContext {
  const GraphLayout& layout;
  DType dtype;                                          // the model's weight dtype, packed weights are converted to it
  const Backend& backend;                               // builds the MoE layers (the ones MoELayer objects use)
  std::shared_ptr<const PackedMatrix>& embeddingTable;  // packed by the embedding op, shared with a tied LM head
};

// Each packs its node's weights (read only during the call) into the op.
std::unique_ptr<GraphOp> makeOp(const EmbeddingNode& node, OpContext& context);  // op_embedding.cpp
std::unique_ptr<GraphOp> makeOp(const LogitsNode& node, OpContext& context);     // op_linear.cpp
std::unique_ptr<GraphOp> makeOp(const LinearNode& node, OpContext& context);     // op_linear.cpp
std::unique_ptr<GraphOp> makeOp(const RmsNormNode& node, OpContext& context);    // op_rms_norm.cpp
std::unique_ptr<GraphOp> makeOp(const RopeNode& node, OpContext& context);       // op_rope.cpp
std::unique_ptr<GraphOp> makeOp(const AttentionNode& node, OpContext& context);  // op_attention.cpp
std::unique_ptr<GraphOp> makeOp(const AddNode& node, OpContext& context);        // op_add.cpp
std::unique_ptr<GraphOp> makeOp(const MlpNode& node, OpContext& context);        // op_dense_mlp.cpp
std::unique_ptr<GraphOp> makeOp(const MoeNode& node, OpContext& context);        // op_moe.cpp
std::unique_ptr<GraphOp> makeOp(const MlaAttentionNode& node, OpContext& context);  // op_mla_attention.cpp

}  // namespace dynamoe::cpu
