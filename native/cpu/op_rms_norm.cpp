#include <cmath>

#include "thread_pool.h"
#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class RmsNormOp : public GraphOp {
 public:
  RmsNormOp(int input, int output, int width, int groupSize, std::vector<float> weight, float epsilon)
      : input_(input), output_(output), width_(width), groupSize_(groupSize), weight_(std::move(weight)),
        epsilon_(epsilon) {}

  void run(GraphStep& step) const override {
    const float* in = step.buffers[input_];
    float* out = step.buffers[output_];
    const size_t inStride = step.strides[input_];
    const size_t outStride = step.strides[output_];
    cpuThreadPool().parallelFor(step.tokens, [&](size_t t) {
      const float* x = in + t * inStride;
      float* y = out + t * outStride;
      for (int g = 0; g < width_; g += groupSize_) {
        // Sum of squares in double: rows of thousands of values keep full fp32 accuracy. Eight interleaved
        // partial sums: one running sum is a chain of dependent adds (RMS norms took ~4% of a prefill's samples).
        double partial[8] = {};
        int i = 0;
        for (; i + 8 <= groupSize_; i += 8) {
          for (int j = 0; j < 8; ++j) partial[j] += static_cast<double>(x[g + i + j]) * x[g + i + j];
        }
        for (; i < groupSize_; ++i) partial[i % 8] += static_cast<double>(x[g + i]) * x[g + i];
        const double squares = ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
                               ((partial[2] + partial[6]) + (partial[3] + partial[7]));
        const float inverse = static_cast<float>(1.0 / std::sqrt(squares / groupSize_ + epsilon_));
        for (int i = 0; i < groupSize_; ++i) y[g + i] = x[g + i] * inverse * weight_[i];
      }
    });
  }

 private:
  int input_, output_, width_, groupSize_;
  std::vector<float> weight_;
  float epsilon_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const RmsNormNode& node, OpContext&) {
  return std::make_unique<RmsNormOp>(node.input, node.output, node.width, node.groupSize, node.weight, node.epsilon);
}

}  // namespace dynamoe::cpu
