// The block's input as its kernels read it: x [tokens][hidden] f32 copied to rows of paddedHidden (zero padded, so
// no GEMM has a K tail), and for f16/bf16 weights a second copy in that dtype for the grouped GEMMs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "cuda_check.h"
#include "element_types.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = 65536;  // grid-stride beyond this: the conversion is far from compute bound

// One thread per padded element: reads and writes of a warp are contiguous, whatever hidden is.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    convertInputKernel(const float* x, int tokens, int hidden, int paddedHidden, float* xF32, T* xAct) {
  const size_t total = static_cast<size_t>(tokens) * paddedHidden;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const size_t token = i / paddedHidden;
    const int column = static_cast<int>(i - token * paddedHidden);
    const float value = column < hidden ? x[token * hidden + column] : 0.0f;
    xF32[i] = value;
    if constexpr (!std::is_same_v<T, float>) xAct[i] = ElementOps<T>::fromFloat(value);
  }
}

template <typename T>
void launchForElement(const float* x, int tokens, int hidden, int paddedHidden, float* xF32, T* xAct,
                      cudaStream_t stream) {
  const long long total = static_cast<long long>(tokens) * paddedHidden;
  const long long blocks = std::min((total + kThreads - 1) / kThreads, kMaxBlocks);
  convertInputKernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(x, tokens, hidden, paddedHidden,
                                                                                xF32, xAct);
  checkCuda(cudaGetLastError(), "launching the input conversion");
}

}  // namespace

void launchConvertInput(const float* x, int tokens, int hidden, int paddedHidden, float* xF32, void* xAct,
                        DType dtype, cudaStream_t stream) {
  if (hidden <= 0 || paddedHidden < hidden) {
    throw Error(code::kInternal, "input conversion needs 0 < hidden <= paddedHidden");
  }
  if (tokens <= 0) return;  // a zero-sized grid is a launch error
  switch (dtype) {
    // f32 weights read xF32 itself: xAct is null or the same buffer, and has nothing else to hold.
    case DType::F32: launchForElement<float>(x, tokens, hidden, paddedHidden, xF32, nullptr, stream); break;
    case DType::F16:
      launchForElement(x, tokens, hidden, paddedHidden, xF32, static_cast<__half*>(xAct), stream);
      break;
    case DType::BF16:
      launchForElement(x, tokens, hidden, paddedHidden, xF32, static_cast<__nv_bfloat16*>(xAct), stream);
      break;
  }
}

}  // namespace dynamoe::cuda
