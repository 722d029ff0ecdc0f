// RMSNorm of a model graph on the GPU: each group of `groupSize` columns (the whole row, or one attention head) as
// x / sqrt(mean(x^2) + eps) * weight. Mirrors native/cpu/op_rms_norm.cpp operation for operation, so the results
// match it bit for bit: the sum of squares in double as eight interleaved partial sums (partial j takes the group's
// columns i with i % 8 == j, in increasing i) combined in the CPU's order, the inverse in double, the scaling in
// f32 without fused multiply-adds (the CPU is built with -ffp-contract=off).
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "device_graph_ops.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {
namespace {

constexpr int kThreads = 256;
// Lanes per (row, group): one per partial sum of the CPU, so each lane's sum runs in the CPU's order.
constexpr int kLanesPerGroup = 8;
constexpr int kGroupsPerBlock = kThreads / kLanesPerGroup;

// The CPU's partial[j] += double(x) * x: the product of two floats is exact in double, only the sum rounds.
__device__ __forceinline__ double addSquare(double partial, float x) {
  const double v = static_cast<double>(x);
  return __dadd_rn(partial, __dmul_rn(v, v));
}

// static_cast<float>(1.0 / std::sqrt(squares / groupSize + epsilon)), each step correctly rounded in double.
__device__ __forceinline__ float inverseRms(double squares, int groupSize, float epsilon) {
  const double meanSquare = __dadd_rn(__ddiv_rn(squares, static_cast<double>(groupSize)), static_cast<double>(epsilon));
  return __double2float_rn(__ddiv_rn(1.0, __dsqrt_rn(meanSquare)));
}

// y = x * inverse * weight, left to right in f32 as the CPU writes it.
__device__ __forceinline__ float scaled(float x, float inverse, float weight) {
  return __fmul_rn(__fmul_rn(x, inverse), weight);
}

// Eight lanes (an octet) per (row, group), `groups` groups a row. Lane j of the octet reads columns j, j + 8, ...
// of its group: the octet reads 32 contiguous bytes a step (whole sectors). Every lane of the warp reaches the
// shuffles (octets past the end only skip memory), so the full mask is right. Each column is read and written by
// the same lane after the octet's sum is complete, so `out` may be `in` (no __restrict__).
__global__ void __launch_bounds__(kThreads)
    rmsNormKernel(const float* in, size_t inStride, float* out, size_t outStride, const float* weight, int tokens,
                  int groups, int groupSize, float epsilon) {
  const unsigned kFullMask = 0xffffffffu;
  const size_t item = static_cast<size_t>(blockIdx.x) * kGroupsPerBlock + threadIdx.x / kLanesPerGroup;
  const int lane = static_cast<int>(threadIdx.x % kLanesPerGroup);
  const bool valid = item < static_cast<size_t>(tokens) * groups;
  const size_t row = valid ? item / groups : 0;
  const int column0 = valid ? static_cast<int>(item - row * groups) * groupSize : 0;
  const float* x = in + row * inStride + column0;
  float* y = out + row * outStride + column0;

  double partial = 0.0;
  if (valid) {
    for (int i = lane; i < groupSize; i += kLanesPerGroup) partial = addSquare(partial, x[i]);
  }
  // ((p0 + p4) + (p1 + p5)) + ((p2 + p6) + (p3 + p7)), the CPU's tree; lane 0 of the octet ends with it.
  partial = __dadd_rn(partial, __shfl_down_sync(kFullMask, partial, 4, kLanesPerGroup));  // lanes 0-3: pj + pj+4
  partial = __dadd_rn(partial, __shfl_down_sync(kFullMask, partial, 1, kLanesPerGroup));  // lanes 0, 2: pairs
  partial = __dadd_rn(partial, __shfl_down_sync(kFullMask, partial, 2, kLanesPerGroup));  // lane 0: the total
  const double squares = __shfl_sync(kFullMask, partial, 0, kLanesPerGroup);
  if (!valid) return;

  const float inverse = inverseRms(squares, groupSize, epsilon);
  for (int i = lane; i < groupSize; i += kLanesPerGroup) y[i] = scaled(x[i], inverse, weight[i]);
}

class DeviceRmsNormOp : public DeviceOp {
 public:
  DeviceRmsNormOp(int input, int output, int width, int groupSize, const std::vector<float>& weight, float epsilon)
      : input_(input), output_(output), groups_(width / groupSize), groupSize_(groupSize), epsilon_(epsilon),
        weight_(weight.size() * sizeof(float), "uploading an RMS norm's weight") {
    checkCuda(cudaMemcpy(weight_.as<float>(), weight.data(), weight_.bytes(), cudaMemcpyHostToDevice),
              "uploading an RMS norm's weight");
  }

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("rms_norm", step.tokens);
    if (step.tokens <= 0) return;  // a zero-sized grid is a launch error
    const long long items = static_cast<long long>(step.tokens) * groups_;
    const long long blocks = (items + kGroupsPerBlock - 1) / kGroupsPerBlock;
    rmsNormKernel<<<static_cast<unsigned>(blocks), kThreads, 0, step.stream>>>(
        step.buffers[input_], step.strides[input_], step.buffers[output_], step.strides[output_],
        weight_.as<float>(), step.tokens, groups_, groupSize_, epsilon_);
    checkCuda(cudaGetLastError(), "launching an RMS norm");
  }

  size_t weightBytes() const override { return weight_.bytes(); }
  const char* name() const override { return "rms_norm"; }

 private:
  int input_, output_, groups_, groupSize_;
  float epsilon_;
  DeviceBuffer weight_;  // [groupSize] f32
};

void requireBuffer(const GraphLayout& layout, int index, int width, const char* what) {
  if (index < 0 || index >= static_cast<int>(layout.bufferWidths.size())) {
    throw Error(code::kShape, std::string("rms_norm node: ") + what + " buffer " + std::to_string(index) +
                                  " is not in the layout");
  }
  if (layout.bufferWidths[index] != width) {
    throw Error(code::kShape, std::string("rms_norm node: ") + what + " buffer " + std::to_string(index) +
                                  " holds " + std::to_string(layout.bufferWidths[index]) +
                                  " floats per token, the op needs " + std::to_string(width));
  }
}

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const RmsNormNode& node, DeviceOpContext& context) {
  if (node.width <= 0 || node.groupSize <= 0 || node.width % node.groupSize != 0) {
    throw Error(code::kShape, "rms_norm node: width " + std::to_string(node.width) +
                                  " must be a positive multiple of groupSize " + std::to_string(node.groupSize));
  }
  if (node.weight.size() != static_cast<size_t>(node.groupSize)) {
    throw Error(code::kShape, "rms_norm node: weight has " + std::to_string(node.weight.size()) +
                                  " values, groupSize is " + std::to_string(node.groupSize));
  }
  requireBuffer(context.layout, node.input, node.width, "input");
  requireBuffer(context.layout, node.output, node.width, "output");
  return std::make_unique<DeviceRmsNormOp>(node.input, node.output, node.width, node.groupSize, node.weight,
                                           node.epsilon);
}

}  // namespace dynamoe::cuda
