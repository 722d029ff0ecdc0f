// LM head: logits of the step's logit rows only (DeviceStep::logitRows, gathered from the input buffer), written
// whole padded rows at a time into step.logits (times the node's scale, fused into the GEMM as its row scale), then
// for scored rows log softmax(logits)[target] in double into step.logProbs, like the CPU's logSoftmaxAt.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "block_reduce.cuh"
#include "cuda_check.h"
#include "dense_gemm.h"
#include "device_graph_ops.h"
#include "moe_kernels.h"
#include "nvtx_range.h"
#include "token_choice.h"

namespace dynamoe::cuda {
namespace {

// Logit rows per GEMM: bounds the converted-input scratch (rows x padded hidden) for any number of scored rows,
// while each GEMM still has enough rows to reuse every weight tile it streams from DRAM.
constexpr int kLogitBlockRows = 2048;

constexpr int kSoftmaxThreads = 512;
constexpr int kWarpSize = 32;
constexpr int kSoftmaxWarps = kSoftmaxThreads / kWarpSize;
constexpr unsigned kFullWarp = 0xffffffffu;

__global__ void fillKernel(float* out, int count, float value) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = value;
}

// Sum over the block in a fixed order (butterfly within warps, then warps 0, 1, ...): the same bits every run.
__device__ double blockSum(double value, double* shared) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullWarp, value, offset);
  if (threadIdx.x % kWarpSize == 0) shared[threadIdx.x / kWarpSize] = value;
  __syncthreads();
  double result = shared[0];
  for (int w = 1; w < kSoftmaxWarps; ++w) result += shared[w];
  __syncthreads();
  return result;
}

__device__ __forceinline__ double quietNaN() { return __longlong_as_double(0x7ff8000000000000LL); }

// One block per scored logit row firstRow + blockIdx.x: log softmax(logits row)[target], the max in float and the sum
// of exp(logit - max) in double (the CPU's logSoftmaxAt). NaN when the target is -1 (or outside the vocabulary).
__global__ void __launch_bounds__(kSoftmaxThreads)
    logSoftmaxAtKernel(const float* logits, size_t stride, int vocab, const int32_t* targets, double* logProbs,
                       int firstRow) {
  __shared__ float maxShared[kSoftmaxWarps];
  __shared__ double sumShared[kSoftmaxWarps];
  const int row = firstRow + blockIdx.x;
  const float* values = logits + static_cast<size_t>(row) * stride;

  float localMax = -INFINITY;
  for (int v = threadIdx.x; v < vocab; v += kSoftmaxThreads) localMax = fmaxf(localMax, values[v]);
  const double maxLogit = static_cast<double>(blockMaxOf<kSoftmaxThreads>(localMax, maxShared));

  double localSum = 0.0;
  for (int v = threadIdx.x; v < vocab; v += kSoftmaxThreads) localSum += exp(static_cast<double>(values[v]) - maxLogit);
  const double sum = blockSum(localSum, sumShared);

  if (threadIdx.x == 0) {
    const int target = targets[row];
    logProbs[row] = target < 0 || target >= vocab ? quietNaN()
                                                  : static_cast<double>(values[target]) - maxLogit - log(sum);
  }
}

class LogitsOp : public DeviceOp {
 public:
  LogitsOp(int input, std::shared_ptr<const DeviceMatrix> weights, int vocab, bool ownsWeights, float scale,
           int multiprocessors)
      : input_(input), weights_(std::move(weights)), vocab_(vocab), ownsWeights_(ownsWeights), scale_(scale),
        multiprocessors_(multiprocessors) {}

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("logits", step.tokens);
    const int total = static_cast<int>(step.logitRows.size());
    if (total == 0) return;
    if (step.logitStride < static_cast<size_t>(weights_->paddedRows)) {
      throw Error(code::kInternal, "logits: the step's logit rows are narrower than the padded vocabulary");
    }
    const int block = std::min(total, kLogitBlockRows);
    // One scratch for every block of rows: the blocks run in stream order, each done before the next converts.
    void* scratch = nullptr;
    const size_t scratchElements = denseInputScratchElements(*weights_, block);
    if (scratchElements > 0) scratch = step.arena->take(scratchElements * dtypeBytes(weights_->dtype), "logits input");
    float* rowScale = nullptr;
    if (scale_ != 1.0f) {
      // The GEMMs' Scaled epilogue multiplies each row by its scale: the CPU's logits[v] *= scale, fused.
      rowScale = step.arena->take<float>(block, "logits scale");
      fillKernel<<<(block + 255) / 256, 256, 0, step.stream>>>(rowScale, block, scale_);
      checkCuda(cudaGetLastError(), "launching the logits scale fill");
    }

    for (int first = 0; first < total; first += block) {
      DenseGemm gemm;
      gemm.weights = weights_.get();
      gemm.rowIndex = step.logitRowIndex + first;
      gemm.rows = std::min(block, total - first);
      gemm.epilogue = Epilogue::Scaled;
      gemm.rowScale = rowScale;
      gemm.output = step.logits + static_cast<size_t>(first) * step.logitStride;
      gemm.outputStride = step.logitStride;
      gemm.multiprocessors = multiprocessors_;
      launchDenseGemmF32Input(gemm, step.buffers[input_], step.strides[input_], scratch, step.stream);
    }

    // Scored rows come in runs (a scoring segment's rows are consecutive): one launch per run.
    for (int r = 0; r < total;) {
      if (!step.logitRows[r].scored) {
        ++r;
        continue;
      }
      int end = r + 1;
      while (end < total && step.logitRows[end].scored) ++end;
      logSoftmaxAtKernel<<<static_cast<unsigned>(end - r), kSoftmaxThreads, 0, step.stream>>>(
          step.logits, step.logitStride, vocab_, step.logitTargets, step.logProbs, r);
      checkCuda(cudaGetLastError(), "launching the log-softmax of scored rows");
      r = end;
    }
    // Chosen rows' ids (every logit row is launched: which rows are chosen, and how, is data on the device, so a
    // captured step replays for any mix of the same shape).
    TokenChoiceRows choices;
    choices.logits = step.logits;
    choices.stride = step.logitStride;
    choices.rows = total;
    choices.choices = step.logitChoices;
    choices.tokens = step.chosenTokens;
    choices.ranked = step.rankedChoices;
    enqueueTokenChoice(choices, *step.arena, step.stream);
  }

  // A head tied to the embedding shares its table, which the embedding op already counts.
  size_t weightBytes() const override { return ownsWeights_ ? weights_->data.bytes() : 0; }
  const char* name() const override { return "logits"; }

 private:
  int input_;
  std::shared_ptr<const DeviceMatrix> weights_;  // [paddedDimension(vocab)][paddedDimension(hidden)]
  int vocab_;
  bool ownsWeights_;
  float scale_;  // of every logit (1: none)
  int multiprocessors_;
};

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const LogitsNode& node, DeviceOpContext& context) {
  const GraphLayout& layout = context.layout;
  const int vocab = layout.vocab;
  if (vocab <= 0 || node.hidden <= 0) throw Error(code::kShape, "logits: vocab and hidden must be positive");
  if (node.input < 0 || node.input >= static_cast<int>(layout.bufferWidths.size()) ||
      layout.bufferWidths[node.input] != node.hidden) {
    throw Error(code::kShape, "logits: the input buffer must hold " + std::to_string(node.hidden) +
                                  " floats per token");
  }
  if (!(node.scale > 0.0f) || !std::isfinite(node.scale)) {
    throw Error(code::kShape, "logits: the scale must be a positive finite number");
  }
  if (node.tied) {
    const std::shared_ptr<const DeviceMatrix> table = context.embeddingTable;
    if (!table) throw Error(code::kShape, "a tied LM head needs the embedding node first");
    if (table->rows != vocab || table->cols != node.hidden || table->paddedRows != paddedDimension(vocab) ||
        table->paddedCols != paddedDimension(node.hidden)) {
      throw Error(code::kShape, "a tied LM head needs the embedding table as [vocab][hidden] = [" +
                                    std::to_string(vocab) + "][" + std::to_string(node.hidden) +
                                    "], padded to 128 in both");
    }
    return std::make_unique<LogitsOp>(node.input, table, vocab, false, node.scale, context.multiprocessors);
  }
  auto weights = std::make_shared<const DeviceMatrix>(
      uploadDenseMatrix(node.weight, vocab, node.hidden, context.dtype, "uploading the LM head's weights"));
  return std::make_unique<LogitsOp>(node.input, std::move(weights), vocab, true, node.scale, context.multiprocessors);
}

}  // namespace dynamoe::cuda
