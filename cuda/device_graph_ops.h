// Factories of the CUDA ops a model graph is made of: one per op kind of the core's graph description (graph.h says
// what each computes), each defined in its own .cu file. Each uploads its node's weights (read only during the call)
// to GPU memory; buffer fields of the nodes index DeviceStep::buffers.
#pragma once

#include <memory>

#include "../native/core/graph.h"
#include "device_step.h"

namespace dynamoe::cuda {

struct DeviceOpContext {
  const GraphLayout& layout;
  DType dtype;  // of the matrices in GPU memory (f32, f16 or bf16); norms, biases and the router stay f32
  int multiprocessors = 0;
  std::shared_ptr<const DeviceMatrix>& embeddingTable;  // uploaded by the embedding op, shared with a tied LM head
};

std::unique_ptr<DeviceOp> makeDeviceOp(const EmbeddingNode& node, DeviceOpContext& context);     // op_embedding.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const LogitsNode& node, DeviceOpContext& context);        // op_logits.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const LinearNode& node, DeviceOpContext& context);        // op_linear.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const RmsNormNode& node, DeviceOpContext& context);       // op_rms_norm.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const RopeNode& node, DeviceOpContext& context);          // op_rope.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const AttentionNode& node, DeviceOpContext& context);     // op_attention.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const AddNode& node, DeviceOpContext& context);           // op_add.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const MlpNode& node, DeviceOpContext& context);           // op_dense_mlp.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const MoeNode& node, DeviceOpContext& context);           // op_moe.cu
std::unique_ptr<DeviceOp> makeDeviceOp(const MlaAttentionNode& node, DeviceOpContext& context);  // op_mla_attention.cu

}  // namespace dynamoe::cuda
