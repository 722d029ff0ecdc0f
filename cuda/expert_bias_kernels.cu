// The MoE stages of layers with biases or another activation (gpt-oss), done as the CPU does them
// (native/cpu/expert_activation.cpp): GEMM 1 writes the raw gate/up sums, this activation adds the gate and up
// biases and applies SwiGLU or gpt-oss's clamped variant; after GEMM 2, each routed row adds its expert's down bias
// times its routing weight. The router bias is added to the router logits before routing (and statistics).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_check.h"
#include "element_types.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = 65536;  // grid-stride beyond this
// GEMM 1's gate/up interleave (Epilogue::SwiGlu): rows 16b..16b+7 are gate features 8b..8b+7, then their up rows.
constexpr int kSwiGluBlock = 8;

unsigned blocksFor(long long elements) {
  return static_cast<unsigned>(std::max(1LL, std::min((elements + kThreads - 1) / kThreads, kMaxBlocks)));
}

// The expert of plan row `row` (offsets: [experts + 1] row starts), or `experts` past the routed rows.
__device__ __forceinline__ int expertOfRow(const int32_t* offsets, int experts, int row) {
  int low = 0, high = experts;  // offsets[low] <= row < offsets[high] once the row is routed
  if (row >= offsets[experts]) return experts;
  while (high - low > 1) {
    const int mid = (low + high) / 2;
    if (offsets[mid] <= row) low = mid; else high = mid;
  }
  return low;
}

__global__ void __launch_bounds__(kThreads) addRouterBiasKernel(float* logits, long long total, int experts,
                                                                  const float* bias) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    logits[i] = __fadd_rn(logits[i], bias[i % experts]);
  }
}

template <typename T, ExpertActivation kActivation>
__global__ void __launch_bounds__(kThreads) activateKernel(ActivateLaunch launch) {
  const long long total = static_cast<long long>(launch.rows) * launch.paddedFfn;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / launch.paddedFfn);
    // Routed rows only: the plan fills expertOffsets[experts] of the pass's rows (the rest were never written).
    if (launch.expertOffsets != nullptr && row >= launch.expertOffsets[launch.experts]) continue;
    const int f = static_cast<int>(i - static_cast<long long>(row) * launch.paddedFfn);
    const float* raw = launch.raw + static_cast<size_t>(row) * launch.rawStride;
    const int gateColumn = (f / kSwiGluBlock) * (2 * kSwiGluBlock) + f % kSwiGluBlock;
    const float inputWeight = launch.inputWeight != nullptr ? launch.inputWeight[row] : 1.0f;
    float gate = __fmul_rn(inputWeight, raw[gateColumn]);
    float up = __fmul_rn(inputWeight, raw[gateColumn + kSwiGluBlock]);
    if (launch.expertOffsets != nullptr) {
      const int expert = expertOfRow(launch.expertOffsets, launch.experts, row);
      if (expert < launch.experts) {
        const size_t at = static_cast<size_t>(expert) * launch.paddedFfn + f;
        if (launch.gateBias != nullptr) gate = __fadd_rn(gate, launch.gateBias[at]);
        if (launch.upBias != nullptr) up = __fadd_rn(up, launch.upBias[at]);
      }
    }
    float value;
    if constexpr (kActivation == ExpertActivation::SwiGluOai) {
      // gpt-oss: both halves clamped, a sharper sigmoid on the gate, the up half offset by one.
      gate = fminf(gate, launch.limit);
      up = fminf(fmaxf(up, -launch.limit), launch.limit);
      value = (up + 1.0f) * (gate / (1.0f + expf(-launch.alpha * gate)));
    } else {
      value = gate / (1.0f + expf(-gate)) * up;
    }
    static_cast<T*>(launch.out)[static_cast<size_t>(row) * launch.outStride + f] = ElementOps<T>::fromFloat(value);
  }
}

__global__ void __launch_bounds__(kThreads) addDownBiasKernel(DownBiasLaunch launch) {
  const long long total = static_cast<long long>(launch.maxRows) * launch.hidden;
  const int routedRows = launch.expertOffsets[launch.experts];
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / launch.hidden);
    if (row >= routedRows) continue;
    const int h = static_cast<int>(i - static_cast<long long>(row) * launch.hidden);
    const int expert = expertOfRow(launch.expertOffsets, launch.experts, row);
    // GEMM 2 already scaled the row by its routing weight: (h W + b) w = h W w + b w, as the CPU adds it.
    float* out = launch.rowOutput + static_cast<size_t>(row) * launch.outputStride + h;
    *out = __fadd_rn(*out, __fmul_rn(launch.rowWeight[row], launch.downBias[static_cast<size_t>(expert) * launch.biasStride + h]));
  }
}

}  // namespace

void launchAddRouterBias(float* logits, int tokens, int experts, const float* bias, cudaStream_t stream) {
  const long long total = static_cast<long long>(tokens) * experts;
  if (total <= 0) return;
  addRouterBiasKernel<<<blocksFor(total), kThreads, 0, stream>>>(logits, total, experts, bias);
  checkCuda(cudaGetLastError(), "launching the router bias");
}

void launchActivate(const ActivateLaunch& launch, cudaStream_t stream) {
  const long long total = static_cast<long long>(launch.rows) * launch.paddedFfn;
  if (total <= 0) return;
  const unsigned blocks = blocksFor(total);
  const bool oai = launch.activation == ExpertActivation::SwiGluOai;
  switch (launch.dtype) {
    case DType::F32:
      oai ? activateKernel<float, ExpertActivation::SwiGluOai><<<blocks, kThreads, 0, stream>>>(launch)
          : activateKernel<float, ExpertActivation::SwiGlu><<<blocks, kThreads, 0, stream>>>(launch);
      break;
    case DType::F16:
      oai ? activateKernel<__half, ExpertActivation::SwiGluOai><<<blocks, kThreads, 0, stream>>>(launch)
          : activateKernel<__half, ExpertActivation::SwiGlu><<<blocks, kThreads, 0, stream>>>(launch);
      break;
    case DType::BF16:
      oai ? activateKernel<__nv_bfloat16, ExpertActivation::SwiGluOai><<<blocks, kThreads, 0, stream>>>(launch)
          : activateKernel<__nv_bfloat16, ExpertActivation::SwiGlu><<<blocks, kThreads, 0, stream>>>(launch);
      break;
  }
  checkCuda(cudaGetLastError(), "launching the expert activation");
}

void launchAddDownBias(const DownBiasLaunch& launch, cudaStream_t stream) {
  const long long total = static_cast<long long>(launch.maxRows) * launch.hidden;
  if (total <= 0) return;
  addDownBiasKernel<<<blocksFor(total), kThreads, 0, stream>>>(launch);
  checkCuda(cudaGetLastError(), "launching the down bias");
}

}  // namespace dynamoe::cuda
