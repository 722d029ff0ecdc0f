// Linear layer: out = in . W^T (+ bias), a one-group GEMM of the MoE machinery (dense_gemm.h). The GEMM writes whole
// padded output rows (zeros past outFeatures: the weight's padding rows are zero); the bias touches the logical
// columns only.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "dense_gemm.h"
#include "device_graph_ops.h"
#include "moe_kernels.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {
namespace {

constexpr int kBiasThreads = 256;
constexpr long long kMaxBiasBlocks = 65536;  // grid-stride beyond this: memory bound

// One thread per logical element: a warp updates consecutive columns of one row (mostly), reading the bias coalesced.
__global__ void __launch_bounds__(kBiasThreads)
    addBiasKernel(float* out, size_t stride, int rows, int features, const float* bias) {
  const size_t total = static_cast<size_t>(rows) * features;
  const size_t step = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const size_t row = i / features;
    const int column = static_cast<int>(i - row * features);
    out[row * stride + column] += bias[column];
  }
}

class LinearOp : public DeviceOp {
 public:
  LinearOp(int input, int output, DeviceMatrix weights, int outFeatures, DeviceBuffer bias, int multiprocessors)
      : input_(input), output_(output), weights_(std::move(weights)), outFeatures_(outFeatures),
        bias_(std::move(bias)), multiprocessors_(multiprocessors) {}

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("linear", step.tokens);
    if (step.tokens <= 0) return;
    DenseGemm gemm;
    gemm.weights = &weights_;
    gemm.rows = step.tokens;
    gemm.epilogue = Epilogue::Scaled;
    gemm.output = step.buffers[output_];
    gemm.outputStride = step.strides[output_];
    gemm.multiprocessors = multiprocessors_;
    // Op-local scratch, freed in stream order when the GEMM is done: a long prefill's layers reuse it.
    const StreamBuffer scratch(denseInputScratchElements(weights_, step.tokens) * dtypeBytes(weights_.dtype),
                               step.stream, "linear input");
    launchDenseGemmF32Input(gemm, step.buffers[input_], step.strides[input_], scratch.as<void>(), step.stream);

    if (bias_.bytes() == 0) return;
    const long long total = static_cast<long long>(step.tokens) * outFeatures_;
    const long long blocks = std::min((total + kBiasThreads - 1) / kBiasThreads, kMaxBiasBlocks);
    addBiasKernel<<<static_cast<unsigned>(blocks), kBiasThreads, 0, step.stream>>>(
        step.buffers[output_], step.strides[output_], step.tokens, outFeatures_, bias_.as<float>());
    checkCuda(cudaGetLastError(), "launching the linear bias");
  }

  size_t weightBytes() const override { return weights_.data.bytes() + bias_.bytes(); }
  const char* name() const override { return "linear"; }

 private:
  int input_, output_;
  DeviceMatrix weights_;
  int outFeatures_;
  DeviceBuffer bias_;  // [outFeatures] f32, or empty
  int multiprocessors_;
};

// Buffer `index` exists and holds `width` floats per token (the graph reader's rule, checked again here).
void requireBuffer(const GraphLayout& layout, int index, int width, const char* what) {
  if (index < 0 || index >= static_cast<int>(layout.bufferWidths.size()) || layout.bufferWidths[index] != width) {
    throw Error(code::kShape, std::string("linear: the ") + what + " buffer must hold " + std::to_string(width) +
                                  " floats per token");
  }
}

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const LinearNode& node, DeviceOpContext& context) {
  if (node.inFeatures <= 0 || node.outFeatures <= 0) throw Error(code::kShape, "linear: sizes must be positive");
  requireBuffer(context.layout, node.input, node.inFeatures, "input");
  requireBuffer(context.layout, node.output, node.outFeatures, "output");
  if (node.input == node.output) throw Error(code::kShape, "linear: input and output must be different buffers");
  if (!node.bias.empty() && node.bias.size() != static_cast<size_t>(node.outFeatures)) {
    throw Error(code::kShape, "linear: the bias must hold outFeatures values");
  }
  DeviceMatrix weights = uploadDenseMatrix(node.weight, node.outFeatures, node.inFeatures, context.dtype,
                                           "uploading a linear layer's weights");
  DeviceBuffer bias;
  if (!node.bias.empty()) {
    const size_t bytes = node.bias.size() * sizeof(float);
    bias = DeviceBuffer(bytes, "uploading a linear layer's bias");
    checkCuda(cudaMemcpy(bias.as<void>(), node.bias.data(), bytes, cudaMemcpyHostToDevice),
              "uploading a linear layer's bias");
  }
  return std::make_unique<LinearOp>(node.input, node.output, std::move(weights), node.outFeatures, std::move(bias),
                                    context.multiprocessors);
}

}  // namespace dynamoe::cuda
