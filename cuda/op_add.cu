// The residual add of a model graph on the GPU: out = a + scale * b over each row's `width` columns (Granite's
// residual_multiplier is the scale). Mirrors native/cpu/op_add.cpp bit for bit: f32, no fused multiply-add.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>

#include "cuda_check.h"
#include "device_graph_ops.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = 65536;  // grid-stride beyond this: the add is memory bound long before

// The CPU is built with -ffp-contract=off: the product rounds before the sum, so no FMA here either.
__device__ __forceinline__ float addScaled(float a, float b, float scale) { return __fadd_rn(a, __fmul_rn(scale, b)); }

// One thread per logical element, row-major: a warp reads and writes contiguous columns of a row. Each element is
// read and written by the same thread, so `out` may alias `a` or `b` (no __restrict__).
__global__ void __launch_bounds__(kThreads)
    addKernel(const float* a, size_t aStride, const float* b, size_t bStride, float* out, size_t outStride,
              int tokens, int width, float scale) {
  const size_t total = static_cast<size_t>(tokens) * width;
  const size_t step = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t e = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const size_t row = e / width;
    const size_t column = e - row * width;
    out[row * outStride + column] = addScaled(a[row * aStride + column], b[row * bStride + column], scale);
  }
}

class DeviceAddOp : public DeviceOp {
 public:
  DeviceAddOp(int a, int b, int output, int width, float scale)
      : a_(a), b_(b), output_(output), width_(width), scale_(scale) {}

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("add", step.tokens);
    if (step.tokens <= 0) return;  // a zero-sized grid is a launch error
    const long long total = static_cast<long long>(step.tokens) * width_;
    const long long blocks = std::min((total + kThreads - 1) / kThreads, kMaxBlocks);
    addKernel<<<static_cast<unsigned>(blocks), kThreads, 0, step.stream>>>(
        step.buffers[a_], step.strides[a_], step.buffers[b_], step.strides[b_], step.buffers[output_],
        step.strides[output_], step.tokens, width_, scale_);
    checkCuda(cudaGetLastError(), "launching the residual add");
  }

  const char* name() const override { return "add"; }

 private:
  int a_, b_, output_, width_;
  float scale_;
};

// A buffer index of the layout whose rows hold `width` floats.
void requireBuffer(const GraphLayout& layout, int index, int width, const char* what) {
  if (index < 0 || index >= static_cast<int>(layout.bufferWidths.size())) {
    throw Error(code::kShape, std::string("add node: ") + what + " buffer " + std::to_string(index) +
                                  " is not in the layout");
  }
  if (layout.bufferWidths[index] != width) {
    throw Error(code::kShape, std::string("add node: ") + what + " buffer " + std::to_string(index) + " holds " +
                                  std::to_string(layout.bufferWidths[index]) + " floats per token, the op needs " +
                                  std::to_string(width));
  }
}

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const AddNode& node, DeviceOpContext& context) {
  if (node.width <= 0) throw Error(code::kShape, "add node: width must be positive");
  requireBuffer(context.layout, node.a, node.width, "a");
  requireBuffer(context.layout, node.b, node.width, "b");
  requireBuffer(context.layout, node.output, node.width, "output");
  return std::make_unique<DeviceAddOp>(node.a, node.b, node.output, node.width, node.scale);
}

}  // namespace dynamoe::cuda
