#include "grouped_gemm.h"
#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class DenseMlpOp : public GraphOp {
 public:
  DenseMlpOp(int input, int output, PackedMatrix gateUp, PackedMatrix down)
      : input_(input), output_(output), gateUp_(std::move(gateUp)), down_(std::move(down)) {}

  void run(GraphStep& step) const override {
    const size_t intermediateStride = static_cast<size_t>(gateUp_.panels()) * kSwiGluColumns;
    ScratchBuffers& scratch = *step.scratch;
    float* const intermediate = static_cast<float*>(
        scratch.get(ScratchSlot::Intermediate, step.tokens * intermediateStride * sizeof(float)));
    GemmGroup first;
    first.weights = &gateUp_;
    first.rows = step.tokens;
    first.input = step.buffers[input_];
    first.inputStride = step.strides[input_];
    first.output = intermediate;
    first.outputStride = intermediateStride;
    runGroupedGemm({first}, Epilogue::SwiGlu, &scratch);
    GemmGroup second;
    second.weights = &down_;
    second.rows = step.tokens;
    second.input = intermediate;
    second.inputStride = intermediateStride;
    second.output = step.buffers[output_];
    second.outputStride = step.strides[output_];
    runGroupedGemm({second}, Epilogue::Scaled, &scratch);
  }

  size_t weightBytes() const override { return gateUp_.bytes() + down_.bytes(); }

 private:
  int input_, output_;
  PackedMatrix gateUp_;
  PackedMatrix down_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const MlpNode& node, OpContext& context) {
  return std::make_unique<DenseMlpOp>(node.input, node.output,
                                      packGateUp(node.gate, node.up, node.ffn, node.hidden, context.dtype),
                                      packColumns(node.down, node.hidden, node.ffn, context.dtype));
}

}  // namespace dynamoe::cpu
