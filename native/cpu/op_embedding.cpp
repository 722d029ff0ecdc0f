#include "../core/errors.h"
#include "thread_pool.h"
#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class EmbeddingOp : public GraphOp {
 public:
  EmbeddingOp(std::shared_ptr<const PackedMatrix> table, int vocab, int hidden, int output, float scale)
      : table_(std::move(table)), vocab_(vocab), hidden_(hidden), output_(output), scale_(scale) {}

  void run(GraphStep& step) const override {
    for (int t = 0; t < step.tokens; ++t) {
      const int id = step.tokenIds[t];
      if (id < 0 || id >= vocab_) {
        throw Error(code::kValue, "token id " + std::to_string(id) + " at position " + std::to_string(t) +
                                      " is outside the vocabulary [0, " + std::to_string(vocab_) + ")");
      }
    }
    float* out = step.buffers[output_];
    const size_t stride = step.strides[output_];
    cpuThreadPool().parallelFor(step.tokens, [&](size_t t) {
      const int id = step.tokenIds[t];
      float* row = out + t * stride;
      lookUp(id, row);
      if (scale_ != 1.0f) {
        for (int h = 0; h < hidden_; ++h) row[h] *= scale_;
      }
    });
  }

  size_t weightBytes() const override { return table_->bytes(); }

 private:
  // Row `id` of the table as stored.
  void lookUp(int id, float* row) const {
    if (table_->quantized()) {
      // Row id % 32 of panel id / 32: a quantized table keeps the file's rows, dequantized as they are looked up.
      const auto* panel = static_cast<const uint8_t*>(table_->panel(id / kPanelWidth));
      dequantizeRow(table_->quant(), panel + (id % kPanelWidth) * table_->rowBytes(), hidden_, row);
      return;
    }
    // Column (id % 32) of panel id / 32: the table shares the LM head's packed layout.
    const void* panel = table_->panel(id / kPanelWidth);
    const int column = id % kPanelWidth;
    for (int h = 0; h < hidden_; ++h) {
      row[h] = loadAsF32(panel, panelElementIndex(table_->dtype(), static_cast<size_t>(h), column), table_->dtype());
    }
  }

  std::shared_ptr<const PackedMatrix> table_;
  int vocab_, hidden_, output_;
  float scale_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const EmbeddingNode& node, OpContext& context) {
  const int vocab = context.layout.vocab;
  context.embeddingTable =
      std::make_shared<const PackedMatrix>(packColumns(node.weight, vocab, node.hidden, context.dtype));
  return std::make_unique<EmbeddingOp>(context.embeddingTable, vocab, node.hidden, node.output, node.scale);
}

}  // namespace dynamoe::cpu
