// Rotary position embedding of a model graph on the GPU, in place on one buffer at each row's position. Mirrors
// native/cpu/op_rope.cpp: the same inverse-frequency table (YaRN's, or theta's over the rotated dimensions, built
// on the host by the same expression), angles, cosines and sines in double, the rotation in f32 without fused
// multiply-adds (the CPU is built with -ffp-contract=off). Dimensions past rotaryDim pass through untouched.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "device_graph_ops.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {
namespace {

constexpr int kThreads = 256;
// Rotated pairs (frequencies) per block: their cosines and sines are computed once and shared by every head.
constexpr int kPairsPerBlock = 256;

struct CosSin {
  float c, s;
};

// static_cast<float>(std::cos(angle) * scale) and the same for sin, angle = position * inverseFrequency in double.
__device__ __forceinline__ CosSin rotation(double position, double inverseFrequency, double scale) {
  const double angle = __dmul_rn(position, inverseFrequency);
  double s, c;
  sincos(angle, &s, &c);
  return {__double2float_rn(__dmul_rn(c, scale)), __double2float_rn(__dmul_rn(s, scale))};
}

// (x, y) -> (x c - y s, y c + x s), each product rounded before the sum as on the CPU.
__device__ __forceinline__ void rotate(float& a, float& b, CosSin r) {
  const float x = a, y = b;
  a = __fsub_rn(__fmul_rn(x, r.c), __fmul_rn(y, r.s));
  b = __fadd_rn(__fmul_rn(y, r.c), __fmul_rn(x, r.s));
}

// Block (row, chunk of pairs): the chunk's cosines and sines go to shared memory, then the block rotates those
// pairs in every head, consecutive threads on consecutive pairs of a head (contiguous for Halves, two floats apart
// for Pairs). Pair i of a head is dimensions (i * pairStride, i * pairStride + partner).
__global__ void __launch_bounds__(kThreads)
    ropeKernel(float* buffer, size_t stride, const int32_t* rowPositions, const double* inverseFrequencies,
               int half, int heads, int headDim, int partner, int pairStride, double scale) {
  __shared__ CosSin rotations[kPairsPerBlock];
  const size_t row = blockIdx.x;
  const int first = static_cast<int>(blockIdx.y) * kPairsPerBlock;
  const int count = min(kPairsPerBlock, half - first);
  const double position = static_cast<double>(rowPositions[row]);
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    rotations[i] = rotation(position, inverseFrequencies[first + i], scale);
  }
  __syncthreads();
  float* rowData = buffer + row * stride;
  const int pairs = heads * count;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int h = p / count;
    const int i = p - h * count;
    float* head = rowData + static_cast<size_t>(h) * headDim;
    const int dimension = (first + i) * pairStride;
    rotate(head[dimension], head[dimension + partner], rotations[i]);
  }
}

class DeviceRopeOp : public DeviceOp {
 public:
  DeviceRopeOp(const RopeNode& node, const std::vector<double>& inverseFrequencies)
      : buffer_(node.buffer), heads_(node.heads), headDim_(node.headDim),
        half_(static_cast<int>(inverseFrequencies.size())),
        // Partner of dimension i in each rotated pair, and the stride between pairs, as on the CPU.
        partner_(node.style == RopeStyle::Halves ? half_ : 1), pairStride_(node.style == RopeStyle::Halves ? 1 : 2),
        scale_(node.scale), inverseFrequencies_(inverseFrequencies.size() * sizeof(double), "uploading a RoPE table") {
    checkCuda(cudaMemcpy(inverseFrequencies_.as<double>(), inverseFrequencies.data(), inverseFrequencies_.bytes(),
                         cudaMemcpyHostToDevice),
              "uploading a RoPE table");
  }

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("rope", step.tokens);
    if (step.tokens <= 0) return;  // a zero-sized grid is a launch error
    const unsigned chunks = static_cast<unsigned>((half_ + kPairsPerBlock - 1) / kPairsPerBlock);
    const dim3 grid(static_cast<unsigned>(step.tokens), chunks);
    ropeKernel<<<grid, kThreads, 0, step.stream>>>(step.buffers[buffer_], step.strides[buffer_], step.rowPositions,
                                                    inverseFrequencies_.as<double>(), half_, heads_, headDim_,
                                                    partner_, pairStride_, scale_);
    checkCuda(cudaGetLastError(), "launching RoPE");
  }

  size_t weightBytes() const override { return inverseFrequencies_.bytes(); }
  const char* name() const override { return "rope"; }

 private:
  int buffer_, heads_, headDim_, half_, partner_, pairStride_;
  double scale_;                      // YaRN's attention factor on cos and sin (1 for the plain rotation)
  DeviceBuffer inverseFrequencies_;  // [half] double
};

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const RopeNode& node, DeviceOpContext& context) {
  const GraphLayout& layout = context.layout;
  if (node.heads <= 0 || node.headDim <= 0 || node.headDim % 2 != 0) {
    throw Error(code::kShape, "rope node: heads must be positive and headDim positive and even");
  }
  const int rotaryDim = node.rotaryDim > 0 ? node.rotaryDim : node.headDim;
  if (rotaryDim % 2 != 0 || rotaryDim > node.headDim) {
    throw Error(code::kShape, "rope node: rotaryDim " + std::to_string(rotaryDim) +
                                  " must be even and at most headDim " + std::to_string(node.headDim));
  }
  if (node.buffer < 0 || node.buffer >= static_cast<int>(layout.bufferWidths.size()) ||
      static_cast<long long>(layout.bufferWidths[node.buffer]) != static_cast<long long>(node.heads) * node.headDim) {
    throw Error(code::kShape, "rope node: buffer " + std::to_string(node.buffer) +
                                  " is not in the layout or does not hold heads x headDim floats per token");
  }
  // A scaled RoPE brings its own table; the plain one derives it from theta over the rotated dimensions only,
  // exactly as the CPU op's constructor does (same expression, same host math library).
  std::vector<double> inverseFrequencies = node.inverseFrequencies;
  if (inverseFrequencies.empty()) {
    for (int i = 0; i < rotaryDim / 2; ++i) inverseFrequencies.push_back(std::pow(node.theta, -2.0 * i / rotaryDim));
  } else if (inverseFrequencies.size() != static_cast<size_t>(rotaryDim / 2)) {
    throw Error(code::kShape, "rope node: inverseFrequencies has " + std::to_string(inverseFrequencies.size()) +
                                  " values, rotaryDim / 2 is " + std::to_string(rotaryDim / 2));
  }
  return std::make_unique<DeviceRopeOp>(node, inverseFrequencies);
}

}  // namespace dynamoe::cuda
