#include "graph_ops.h"

namespace dynamoe::cpu {

namespace {

class AddOp : public GraphOp {
 public:
  AddOp(int a, int b, int output, int width, float scale)
      : a_(a), b_(b), output_(output), width_(width), scale_(scale) {}

  void run(GraphStep& step) const override {
    for (int t = 0; t < step.tokens; ++t) {
      const float* a = step.buffers[a_] + t * step.strides[a_];
      const float* b = step.buffers[b_] + t * step.strides[b_];
      float* out = step.buffers[output_] + t * step.strides[output_];
      if (scale_ == 1.0f) {
        for (int i = 0; i < width_; ++i) out[i] = a[i] + b[i];
      } else {
        for (int i = 0; i < width_; ++i) out[i] = a[i] + scale_ * b[i];
      }
    }
  }

 private:
  int a_, b_, output_, width_;
  float scale_;
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const AddNode& node, OpContext&) {
  return std::make_unique<AddOp>(node.a, node.b, node.output, node.width, node.scale);
}

}  // namespace dynamoe::cpu
