// Token embedding of a model graph on the GPU: row t of the output is row tokenIds[t] of the table times the
// node's scale, in f32. Mirrors native/cpu/op_embedding.cpp: the table is held in the model's dtype (the CPU packs
// it to the same dtype with the same rounding) and widened to f32 before the scale, one f32 multiply. The table is
// uploaded as a GEMM weight matrix ([paddedDimension(vocab)][paddedDimension(hidden)], zero padded) and shared
// through the op context, so a tied LM head multiplies by the same GPU copy. A quantized table keeps its GGUF blocks
// (as the CPU does) and each looked-up row is dequantized by the core's decoder.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "../native/core/quant_groups.h"
#include "cuda_check.h"
#include "dense_gemm.h"
#include "device_graph_ops.h"
#include "device_weights.h"
#include "element_types.cuh"
#include "moe_kernels.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {
namespace {

constexpr int kThreads = 256;

// One block per token, consecutive threads on consecutive columns (coalesced reads of the table row and writes of
// the output row). The host checked the ids already; an id outside [0, vocab) still reads nothing and gives zeros.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    embeddingKernel(const T* __restrict__ table, int vocab, int hidden, size_t tableStride,
                    const int32_t* __restrict__ tokenIds, float* __restrict__ out, size_t outStride, float scale) {
  const size_t t = blockIdx.x;
  const int id = tokenIds[t];
  const bool inVocabulary = id >= 0 && id < vocab;
  const T* source = table + (inVocabulary ? static_cast<size_t>(id) * tableStride : 0);
  float* row = out + t * outStride;
  for (int h = threadIdx.x; h < hidden; h += blockDim.x) {
    // value * 1 is value exactly, so the CPU skipping the multiply for scale 1 changes nothing.
    row[h] = inVocabulary ? __fmul_rn(ElementOps<T>::toFloat(source[h]), scale) : 0.0f;
  }
}

// A quantized table (GGUF blocks a row): thread i of a token's block decodes its row's groups of 16 i, i + 256, ...
// with the core's decoder, the CPU's dequantization bit for bit, then scales them as the plain kernel does.
template <QuantType kType>
__global__ void __launch_bounds__(kThreads)
    quantEmbeddingKernel(const uint8_t* __restrict__ table, int vocab, int hidden, size_t rowBytes,
                         const int32_t* __restrict__ tokenIds, float* __restrict__ out, size_t outStride, float scale) {
  constexpr QuantTraits kTraits = quantTraits(kType);
  constexpr int kGroupsPerBlock = kTraits.blockElements / kQuantGroupElements;
  const size_t t = blockIdx.x;
  const int id = tokenIds[t];
  const bool inVocabulary = id >= 0 && id < vocab;
  const uint8_t* source = table + (inVocabulary ? static_cast<size_t>(id) * rowBytes : 0);
  float* row = out + t * outStride;
  for (int g = threadIdx.x; g < hidden / kQuantGroupElements; g += blockDim.x) {
    float values[kQuantGroupElements];
    const int block = g / kGroupsPerBlock;
    dequantizeGroup16(kType, source + static_cast<size_t>(block) * kTraits.blockBytes, g - block * kGroupsPerBlock,
                      values);
#pragma unroll
    for (int i = 0; i < kQuantGroupElements; ++i) {
      row[g * kQuantGroupElements + i] = inVocabulary ? __fmul_rn(values[i], scale) : 0.0f;
    }
  }
}

template <QuantType kType>
void launchQuantEmbedding(const DeviceMatrix& m, const DeviceStep& step, float* out, size_t outStride, float scale) {
  quantEmbeddingKernel<kType><<<static_cast<unsigned>(step.tokens), kThreads, 0, step.stream>>>(
      m.data.as<uint8_t>(), m.rows, m.cols, quantRowBytes(kType, m.paddedCols), step.tokenIds, out, outStride, scale);
}

void launchQuantEmbedding(const DeviceMatrix& m, const DeviceStep& step, float* out, size_t outStride, float scale) {
  const bool known = visitQuantType(m.quant, [&](auto type) {
    launchQuantEmbedding<decltype(type)::value>(m, step, out, outStride, scale);
  });
  if (!known) throw Error(code::kInternal, "the quantized embedding lookup needs a quantized table");
}

class DeviceEmbeddingOp : public DeviceOp {
 public:
  DeviceEmbeddingOp(std::shared_ptr<const DeviceMatrix> table, int output, float scale)
      : table_(std::move(table)), output_(output), scale_(scale) {}

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("embedding", step.tokens);
    if (step.tokens <= 0) return;  // a zero-sized grid is a launch error
    const DeviceMatrix& m = *table_;
    const size_t stride = static_cast<size_t>(m.paddedCols);
    float* out = step.buffers[output_];
    const size_t outStride = step.strides[output_];
    const unsigned blocks = static_cast<unsigned>(step.tokens);
    if (m.quant != QuantType::None) {
      launchQuantEmbedding(m, step, out, outStride, scale_);
      checkCuda(cudaGetLastError(), "launching the embedding lookup");
      return;
    }
    switch (m.dtype) {
      case DType::F32:
        embeddingKernel<<<blocks, kThreads, 0, step.stream>>>(m.data.as<float>(), m.rows, m.cols, stride,
                                                              step.tokenIds, out, outStride, scale_);
        break;
      case DType::F16:
        embeddingKernel<<<blocks, kThreads, 0, step.stream>>>(m.data.as<__half>(), m.rows, m.cols, stride,
                                                              step.tokenIds, out, outStride, scale_);
        break;
      case DType::BF16:
        embeddingKernel<<<blocks, kThreads, 0, step.stream>>>(m.data.as<__nv_bfloat16>(), m.rows, m.cols, stride,
                                                              step.tokenIds, out, outStride, scale_);
        break;
    }
    checkCuda(cudaGetLastError(), "launching the embedding lookup");
  }

  size_t weightBytes() const override { return table_->data.bytes(); }
  const char* name() const override { return "embedding"; }

 private:
  std::shared_ptr<const DeviceMatrix> table_;
  int output_;
  float scale_;
};

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const EmbeddingNode& node, DeviceOpContext& context) {
  const GraphLayout& layout = context.layout;
  const int vocab = layout.vocab;
  if (vocab <= 0 || node.hidden <= 0) throw Error(code::kShape, "embedding node: vocab and hidden must be positive");
  if (node.output < 0 || node.output >= static_cast<int>(layout.bufferWidths.size()) ||
      layout.bufferWidths[node.output] != node.hidden) {
    throw Error(code::kShape, "embedding node: output buffer " + std::to_string(node.output) +
                                  " is not in the layout or does not hold hidden (" + std::to_string(node.hidden) +
                                  ") floats per token");
  }
  if (node.weight.data == nullptr) throw Error(code::kShape, "embedding node: the table is missing");
  // A quantized table stays in its blocks, as on the CPU (rows are dequantized as they are looked up), and a tied
  // LM head multiplies by it with the quantized GEMMs.
  auto table = std::make_shared<DeviceMatrix>(
      uploadDenseMatrix(node.weight, vocab, node.hidden, context.dtype, "uploading the embedding table"));
  context.embeddingTable = table;
  return std::make_unique<DeviceEmbeddingOp>(std::move(table), node.output, node.scale);
}

}  // namespace dynamoe::cuda
