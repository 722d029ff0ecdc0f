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
  runGroupedGemm({group}, Epilogue::Scaled, step.scratch);
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

// Rows of logits held at once: scratch stays bounded for any vocabulary and step.
constexpr int kLogitRows = 64;

// log softmax(logits)[target], in double so long texts' summed log-likelihoods stay exact.
double logSoftmaxAt(const float* logits, int vocab, int target) {
  const double maxLogit = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - maxLogit);
  return static_cast<double>(logits[target]) - maxLogit - std::log(sum);
}

// A row whose logits a segment asks for: written to `logits` ([vocab]), scored at `target` into `logProb`, or its
// next id (greedy or sampled, `choice`) written to `chosenToken`.
struct LogitRow {
  int32_t row;
  float* logits;
  int32_t target;
  double* logProb;
  TokenChoice choice;
  int32_t* chosenToken = nullptr;
};

class LogitsOp : public GraphOp {
 public:
  LogitsOp(int input, std::shared_ptr<const PackedMatrix> weights, int vocab, bool ownsWeights, float scale)
      : input_(input), weights_(std::move(weights)), vocab_(vocab), ownsWeights_(ownsWeights), scale_(scale) {}

  // Every segment's asked-for rows (its last row when generating), kLogitRows at a time through one GEMM that
  // gathers them, so a step of many decoding sequences reads the head's weights once.
  void run(GraphStep& step) const override {
    std::vector<LogitRow> wanted;
    for (const SegmentRows& segment : step.segments) {
      const StepSegment& request = *segment.request;
      const int first = request.lastRowLogits && !request.targets ? segment.rows - 1 : 0;
      for (int r = first; r < segment.rows; ++r) {
        LogitRow row{segment.firstRow + r, nullptr, -1, nullptr, TokenChoice{}, nullptr};
        if (request.targets) {
          row.target = request.targets[r];
          row.logProb = request.targetLogProbs + r;
        } else if (request.choice.limit > 0) {
          row.choice = request.choice;
          row.choice.limit = std::min(row.choice.limit, vocab_);
          row.chosenToken = request.chosenToken;
        } else {
          row.logits = request.logits + static_cast<size_t>(r - first) * vocab_;
        }
        wanted.push_back(row);
      }
    }
    const size_t padded = static_cast<size_t>(weights_->panels()) * kPanelWidth;
    const int block = std::min(static_cast<int>(wanted.size()), kLogitRows);
    // No MoE op runs at the same time to use the slot.
    float* const scratch =
        static_cast<float*>(step.scratch->get(ScratchSlot::RowOutput, block * padded * sizeof(float)));
    std::vector<int32_t> rowIndex(block);
    for (size_t first = 0; first < wanted.size(); first += block) {
      const int rows = static_cast<int>(std::min(wanted.size() - first, static_cast<size_t>(block)));
      for (int r = 0; r < rows; ++r) rowIndex[r] = wanted[first + r].row;
      GemmGroup group;
      group.weights = weights_.get();
      group.rows = rows;
      group.input = step.buffers[input_];
      group.inputStride = step.strides[input_];
      group.inputRowIndex = rowIndex.data();
      group.output = scratch;
      group.outputStride = padded;
      runGroupedGemm({group}, Epilogue::Scaled, step.scratch);
      for (int r = 0; r < rows; ++r) {
        const LogitRow& row = wanted[first + r];
        float* const logits = scratch + r * padded;
        if (scale_ != 1.0f) {
          for (int v = 0; v < vocab_; ++v) logits[v] *= scale_;
        }
        if (row.choice.limit > 0) {
          *row.chosenToken = chooseToken(logits, row.choice);
        } else if (row.logits) {
          // The GEMM writes whole 32-column panels; the caller's logits have exactly `vocab` columns.
          std::memcpy(row.logits, logits, vocab_ * sizeof(float));
        } else {
          *row.logProb =
              row.target < 0 ? std::numeric_limits<double>::quiet_NaN() : logSoftmaxAt(logits, vocab_, row.target);
        }
      }
    }
  }

  // A head tied to the embedding shares its table, which the embedding op already counts.
  size_t weightBytes() const override { return ownsWeights_ ? weights_->bytes() : 0; }

 private:
  int input_;
  std::shared_ptr<const PackedMatrix> weights_;
  int vocab_;
  bool ownsWeights_;
  float scale_;  // of every logit (1: none)
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
    return std::make_unique<LogitsOp>(node.input, context.embeddingTable, vocab, false, node.scale);
  }
  auto packed = std::make_shared<const PackedMatrix>(packColumns(node.weight, vocab, node.hidden, context.dtype));
  return std::make_unique<LogitsOp>(node.input, std::move(packed), vocab, true, node.scale);
}

}  // namespace dynamoe::cpu
