#include <cmath>

#include "thread_pool.h"
#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class RopeOp : public GraphOp {
 public:
  RopeOp(int buffer, int heads, int headDim, int rotaryDim, double theta, RopeStyle style)
      : buffer_(buffer), heads_(heads), headDim_(headDim), style_(style) {
    // Frequencies over the rotated dimensions only: a partial rotary head is a rotaryDim-wide head for RoPE.
    for (int i = 0; i < rotaryDim / 2; ++i) inverseFrequency_.push_back(std::pow(theta, -2.0 * i / rotaryDim));
  }

  void run(GraphStep& step) const override {
    const int half = static_cast<int>(inverseFrequency_.size());
    // Partner of dimension i in each rotated pair, and the stride between pairs.
    const int partner = style_ == RopeStyle::Halves ? half : 1;
    const int pairStride = style_ == RopeStyle::Halves ? 1 : 2;
    // Tokens in parallel: the sines and cosines cost more than the rotations.
    cpuThreadPool().parallelFor(step.tokens, [&](size_t t) {
      float* row = step.buffers[buffer_] + t * step.strides[buffer_];
      const double position = step.rowPositions[t];
      for (int i = 0; i < half; ++i) {
        // Angles in double: positions of long contexts keep their precision.
        const double angle = position * inverseFrequency_[i];
        const float c = static_cast<float>(std::cos(angle));
        const float s = static_cast<float>(std::sin(angle));
        for (int h = 0; h < heads_; ++h) {
          float* head = row + h * headDim_;
          float& a = head[i * pairStride];
          float& b = head[i * pairStride + partner];
          const float x = a, y = b;
          a = x * c - y * s;
          b = y * c + x * s;
        }
      }
    });
  }

 private:
  int buffer_, heads_, headDim_;
  RopeStyle style_;
  std::vector<double> inverseFrequency_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const RopeNode& node, OpContext&) {
  return std::make_unique<RopeOp>(node.buffer, node.heads, node.headDim, node.rotaryDim > 0 ? node.rotaryDim : node.headDim,
                                  node.theta, node.style);
}

}  // namespace dynamoe::cpu
