// Dense SwiGLU MLP: down(silu(gate x) * up x), as two one-group GEMMs of the MoE machinery (dense_gemm.h). The
// first multiplies the gate/up interleaved weights and applies the SwiGLU epilogue, storing the intermediate in the
// weights' dtype (f32 for f32 weights); the second multiplies it by down into the f32 output.
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "cuda_check.h"
#include "dense_gemm.h"
#include "device_graph_ops.h"
#include "moe_kernels.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {
namespace {

class DenseMlpOp : public DeviceOp {
 public:
  DenseMlpOp(int input, int output, DeviceMatrix gateUp, DeviceMatrix down, int multiprocessors)
      : input_(input), output_(output), gateUp_(std::move(gateUp)), down_(std::move(down)),
        multiprocessors_(multiprocessors) {}

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("mlp", step.tokens);
    if (step.tokens <= 0) return;
    const DType dtype = gateUp_.dtype;
    // [tokens][paddedFfn]: padding features come out exactly 0 (zero gate and up rows), and down's padding
    // columns are zero too, so the second GEMM's K tail adds nothing.
    const size_t intermediateStride = static_cast<size_t>(gateUp_.paddedRows / 2);
    // Op-local scratch, freed in stream order when the op's kernels are done: a long prefill's layers reuse it.
    const StreamBuffer intermediateBuffer(static_cast<size_t>(step.tokens) * intermediateStride * dtypeBytes(dtype),
                                          step.stream, "mlp intermediate");
    void* intermediate = intermediateBuffer.as<void>();

    DenseGemm first;
    first.weights = &gateUp_;
    first.rows = step.tokens;
    first.epilogue = Epilogue::SwiGlu;
    first.output = intermediate;
    first.outputStride = intermediateStride;
    first.multiprocessors = multiprocessors_;
    const StreamBuffer scratch(denseInputScratchElements(gateUp_, step.tokens) * dtypeBytes(dtype), step.stream,
                               "mlp input");
    launchDenseGemmF32Input(first, step.buffers[input_], step.strides[input_], scratch.as<void>(), step.stream);

    DenseGemm second;
    second.weights = &down_;
    second.input = intermediate;  // already in the weights' dtype
    second.inputStride = intermediateStride;
    second.rows = step.tokens;
    second.epilogue = Epilogue::Scaled;
    second.output = step.buffers[output_];
    second.outputStride = step.strides[output_];
    second.multiprocessors = multiprocessors_;
    launchDenseGemm(second, step.stream);
  }

  size_t weightBytes() const override { return gateUp_.data.bytes() + down_.data.bytes(); }
  const char* name() const override { return "mlp"; }

 private:
  int input_, output_;
  DeviceMatrix gateUp_;  // [2 * paddedFfn][paddedHidden], gate/up interleaved in blocks of 8 rows
  DeviceMatrix down_;    // [paddedHidden][paddedFfn]
  int multiprocessors_;
};

void requireBuffer(const GraphLayout& layout, int index, int width, const char* what) {
  if (index < 0 || index >= static_cast<int>(layout.bufferWidths.size()) || layout.bufferWidths[index] != width) {
    throw Error(code::kShape, std::string("mlp: the ") + what + " buffer must hold " + std::to_string(width) +
                                  " floats per token");
  }
}

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const MlpNode& node, DeviceOpContext& context) {
  if (node.hidden <= 0 || node.ffn <= 0) throw Error(code::kShape, "mlp: sizes must be positive");
  requireBuffer(context.layout, node.input, node.hidden, "input");
  requireBuffer(context.layout, node.output, node.hidden, "output");
  if (node.input == node.output) throw Error(code::kShape, "mlp: input and output must be different buffers");
  // The second GEMM reads the first's output as its activations: with any quantized matrix (bf16 activations) the
  // plain ones go up as bf16 too, so both take the same activation type.
  const bool quantized = node.gate.quant != QuantType::None || node.up.quant != QuantType::None ||
                         node.down.quant != QuantType::None;
  const DType dtype = quantized ? DType::BF16 : context.dtype;
  DeviceMatrix gateUp = uploadDenseGateUp(node.gate, node.up, node.ffn, node.hidden, dtype,
                                          "uploading a dense MLP's gate and up weights");
  DeviceMatrix down = uploadDenseMatrix(node.down, node.hidden, node.ffn, dtype, "uploading a dense MLP's down weights");
  return std::make_unique<DenseMlpOp>(node.input, node.output, std::move(gateUp), std::move(down),
                                      context.multiprocessors);
}

}  // namespace dynamoe::cuda
