// Linear layers and the LM head (logits, or log-probabilities of given next tokens) on the packed GEMM.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "grouped_gemm.h"
#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

// input . weights for `rows` rows of a step, with the step's sequence's scratch.
void multiply(GraphStep& step, const PackedMatrix& weights, const float* input, size_t inputStride, int rows,
              float* output, size_t outputStride) {
  GemmGroup group;
  group.weights = &weights;
  group.rows = rows;
  group.input = input;
  group.inputStride = inputStride;
  group.output = output;
  group.outputStride = outputStride;
  runGroupedGemm({group}, Epilogue::Scaled, &step.cache->stepScratch());
}

class LinearOp : public GraphOp {
 public:
  LinearOp(int input, int output, std::shared_ptr<const PackedMatrix> weights, int outFeatures, std::vector<float> bias)
      : input_(input), output_(output), weights_(std::move(weights)), outFeatures_(outFeatures),
        bias_(std::move(bias)) {}

  void run(GraphStep& step) const override {
    float* out = step.buffers[output_];
    const size_t stride = step.strides[output_];
    multiply(step, *weights_, step.buffers[input_], step.strides[input_], step.tokens, out, stride);
    if (bias_.empty()) return;
    for (int t = 0; t < step.tokens; ++t) {
      float* row = out + t * stride;
      for (int i = 0; i < outFeatures_; ++i) row[i] += bias_[i];
    }
  }

  size_t weightBytes() const override { return weights_->bytes() + bias_.size() * sizeof(float); }

 private:
  int input_, output_;
  std::shared_ptr<const PackedMatrix> weights_;
  int outFeatures_;
  std::vector<float> bias_;
};

// Rows of logits held at once while scoring targets.
constexpr int kScoreRows = 64;

// log softmax(logits)[target], in double so long texts' summed log-likelihoods stay exact.
double logSoftmaxAt(const float* logits, int vocab, int target) {
  const double maxLogit = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - maxLogit);
  return static_cast<double>(logits[target]) - maxLogit - std::log(sum);
}

class LogitsOp : public GraphOp {
 public:
  LogitsOp(int input, std::shared_ptr<const PackedMatrix> weights, int vocab, bool ownsWeights)
      : input_(input), weights_(std::move(weights)), vocab_(vocab), ownsWeights_(ownsWeights) {}

  void run(GraphStep& step) const override {
    if (step.targets) return score(step);
    const int rows = step.lastRowLogits ? 1 : step.tokens;
    const size_t inputStride = step.strides[input_];
    const float* input = step.buffers[input_] + static_cast<size_t>(step.tokens - rows) * inputStride;
    // The GEMM writes whole 32-column panels; the caller's logits have exactly `vocab` columns.
    const size_t padded = static_cast<size_t>(weights_->panels()) * kPanelWidth;
    float* const scratch = rowScratch(step, rows * padded);
    multiply(step, *weights_, input, inputStride, rows, scratch, padded);
    for (int r = 0; r < rows; ++r) {
      std::memcpy(step.logits + static_cast<size_t>(r) * vocab_, scratch + r * padded, vocab_ * sizeof(float));
    }
  }

  // Log-probabilities of the target ids, a block of rows at a time, so scratch stays bounded for any vocabulary.
  void score(GraphStep& step) const {
    const size_t inputStride = step.strides[input_];
    const size_t padded = static_cast<size_t>(weights_->panels()) * kPanelWidth;
    const int block = std::min(step.tokens, kScoreRows);
    float* const scratch = rowScratch(step, block * padded);
    for (int first = 0; first < step.tokens; first += block) {
      const int rows = std::min(block, step.tokens - first);
      multiply(step, *weights_, step.buffers[input_] + first * inputStride, inputStride, rows, scratch, padded);
      for (int r = 0; r < rows; ++r) {
        const int target = step.targets[first + r];
        const float* logits = scratch + r * padded;
        step.targetLogProbs[first + r] =
            target < 0 ? std::numeric_limits<double>::quiet_NaN() : logSoftmaxAt(logits, vocab_, target);
      }
    }
  }

  // `floats` of the sequence's scratch for logit rows (no MoE op runs at the same time to use the slot).
  static float* rowScratch(GraphStep& step, size_t floats) {
    return static_cast<float*>(step.cache->stepScratch().get(ScratchSlot::RowOutput, floats * sizeof(float)));
  }

  // A head tied to the embedding shares its table, which the embedding op already counts.
  size_t weightBytes() const override { return ownsWeights_ ? weights_->bytes() : 0; }

 private:
  int input_;
  std::shared_ptr<const PackedMatrix> weights_;
  int vocab_;
  bool ownsWeights_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const LinearNode& node, OpContext& context) {
  auto packed = std::make_shared<const PackedMatrix>(
      packColumns(node.weight, node.outFeatures, node.inFeatures, context.dtype));
  return std::make_unique<LinearOp>(node.input, node.output, std::move(packed), node.outFeatures, node.bias);
}

std::unique_ptr<GraphOp> makeOp(const LogitsNode& node, OpContext& context) {
  const int vocab = context.layout.vocab;
  if (node.tied) {
    if (!context.embeddingTable) throw Error(code::kShape, "a tied LM head needs the embedding node first");
    return std::make_unique<LogitsOp>(node.input, context.embeddingTable, vocab, false);
  }
  auto packed = std::make_shared<const PackedMatrix>(packColumns(node.weight, vocab, node.hidden, context.dtype));
  return std::make_unique<LogitsOp>(node.input, std::move(packed), vocab, true);
}

}  // namespace dynamoe::cpu
