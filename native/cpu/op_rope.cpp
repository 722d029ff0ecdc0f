#include <cmath>
#include <vector>

#include "thread_pool.h"
#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class RopeOp : public GraphOp {
 public:
  explicit RopeOp(const RopeNode& node)
      : buffer_(node.buffer), heads_(node.heads), headDim_(node.headDim), style_(node.style), scale_(node.scale),
        inverseFrequency_(node.inverseFrequencies) {
    // A scaled RoPE brings its own table; the plain one derives it from theta over the rotated dimensions only
    // (a partial rotary head is a rotaryDim-wide head for RoPE).
    const int rotaryDim = node.rotaryDim > 0 ? node.rotaryDim : node.headDim;
    if (inverseFrequency_.empty()) {
      for (int i = 0; i < rotaryDim / 2; ++i) inverseFrequency_.push_back(std::pow(node.theta, -2.0 * i / rotaryDim));
    }
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
        const float c = static_cast<float>(std::cos(angle) * scale_);
        const float s = static_cast<float>(std::sin(angle) * scale_);
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
  double scale_;  // YaRN's attention factor on cos and sin (1 for the plain rotation)
  std::vector<double> inverseFrequency_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const RopeNode& node, OpContext&) {
  return std::make_unique<RopeOp>(node);
}

}  // namespace dynamoe::cpu
