#include "attention_prefill.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "cuda_check.h"
#include "device_buffer.h"
#include "attention_range.cuh"
#include "element_types.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = 65536;  // grid-stride beyond this: the copies are memory bound
// Scores, probabilities, queries and outputs of one row block stay within this.
constexpr size_t kScratchBudget = size_t{256} << 20;

unsigned gridFor(long long elements) {
  return static_cast<unsigned>(std::max(1LL, std::min((elements + kThreads - 1) / kThreads, kMaxBlocks)));
}

__device__ __forceinline__ size_t poolRow(const int32_t* table, int p) {
  return static_cast<size_t>(table[p / kDeviceBlockTokens]) * kDeviceBlockTokens + p % kDeviceBlockTokens;
}

// keys [cPad][dPad]: row j is position j's key of kv head `kvHead`, zero past `context` and past headDim.
template <typename T, typename KvT>
__global__ void __launch_bounds__(kThreads)
    gatherKeysKernel(const KvT* keys, size_t rowStride, const int32_t* table, int kvHead, int headDim, int context,
                     int cPad, int dPad, T* out) {
  const size_t total = static_cast<size_t>(cPad) * dPad;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(i / dPad);
    const int d = static_cast<int>(i % dPad);
    const float v = j < context && d < headDim ? ElementOps<KvT>::toFloat(keys[poolRow(table, j) * rowStride +
                                                                                 static_cast<size_t>(kvHead) * headDim + d])
                                               : 0.0f;
    out[i] = ElementOps<T>::fromFloat(v);
  }
}

// values transposed [dPad][cPad]: row d holds dimension d of every position's value (the P V GEMM's weights).
template <typename T, typename KvT>
__global__ void __launch_bounds__(kThreads)
    gatherValuesKernel(const KvT* values, size_t rowStride, const int32_t* table, int kvHead, int headDim,
                       int context, int cPad, int dPad, T* out) {
  const size_t total = static_cast<size_t>(dPad) * cPad;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(i / cPad);
    const int j = static_cast<int>(i % cPad);
    const float v = j < context && d < headDim ? ElementOps<KvT>::toFloat(values[poolRow(table, j) * rowStride +
                                                                                   static_cast<size_t>(kvHead) * headDim + d])
                                               : 0.0f;
    out[i] = ElementOps<T>::fromFloat(v);
  }
}

// queries [groupSize * rows][dPad]: row hl * rows + r is query head firstHead + hl of block row r.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gatherQueriesKernel(const float* query, size_t stride, int firstHead, int groupSize, int headDim, int rows,
                        int dPad, T* out) {
  const size_t total = static_cast<size_t>(groupSize) * rows * dPad;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t row = i / dPad;
    const int d = static_cast<int>(i % dPad);
    const int hl = static_cast<int>(row / rows);
    const int r = static_cast<int>(row % rows);
    const float v = d < headDim ? query[static_cast<size_t>(r) * stride + static_cast<size_t>(firstHead + hl) * headDim + d]
                                : 0.0f;
    out[i] = ElementOps<T>::fromFloat(v);
  }
}

// Fixed-order block reductions (every thread gets the result).
__device__ float blockMax(float value, float* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) shared[threadIdx.x] = fmaxf(shared[threadIdx.x], shared[threadIdx.x + half]);
    __syncthreads();
  }
  const float result = shared[0];
  __syncthreads();
  return result;
}

__device__ float blockSum(float value, float* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const float result = shared[0];
  __syncthreads();
  return result;
}

// One block per score row (query head hl of block row r, position firstPosition + r): the causal (and windowed)
// softmax of its scaled scores, the head's sink joining the denominator, written as probabilities of the GEMM dtype
// ([probStride] columns, zero where the row cannot see).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    causalSoftmaxKernel(const float* scores, int scoreStride, T* probs, int probStride, int rows, int firstPosition,
                        int window, int chunk, int temperatureFloor, float temperatureScale, float rowScale,
                        const float* sinks, int firstHead) {
  __shared__ float shared[kThreads];
  const int row = blockIdx.x;
  const int hl = row / rows;
  const int position = firstPosition + row % rows;
  int first, visible;
  attention_detail::visibleRange(position, window, chunk, first, visible);
  const float scale = rowScale * attention_detail::attentionTemperatureAt(position, temperatureFloor, temperatureScale);
  const float* s = scores + static_cast<size_t>(row) * scoreStride;
  T* p = probs + static_cast<size_t>(row) * probStride;
  const float sink = sinks != nullptr ? sinks[firstHead + hl] : -INFINITY;
  float localMax = -INFINITY;
  for (int j = first + threadIdx.x; j < visible; j += kThreads) localMax = fmaxf(localMax, s[j] * scale);
  const float maxScore = fmaxf(blockMax(localMax, shared), sink);
  float localSum = 0.0f;
  for (int j = first + threadIdx.x; j < visible; j += kThreads) localSum += expf(s[j] * scale - maxScore);
  const float sum = blockSum(localSum, shared) + (sinks != nullptr ? expf(sink - maxScore) : 0.0f);
  const float inverse = 1.0f / sum;
  for (int j = threadIdx.x; j < probStride; j += kThreads) {
    const float value = j >= first && j < visible ? expf(s[j] * scale - maxScore) * inverse : 0.0f;
    p[j] = ElementOps<T>::fromFloat(value);
  }
}

// outputs [groupSize * rows][dPad] f32 -> the segment's output rows, head firstHead + hl at its columns.
__global__ void __launch_bounds__(kThreads)
    scatterOutputsKernel(const float* outputs, int dPad, int firstHead, int groupSize, int headDim, int rows,
                         float* out, size_t outStride) {
  const size_t total = static_cast<size_t>(groupSize) * rows * headDim;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t row = i / headDim;
    const int d = static_cast<int>(i % headDim);
    const int hl = static_cast<int>(row / rows);
    const int r = static_cast<int>(row % rows);
    out[static_cast<size_t>(r) * outStride + static_cast<size_t>(firstHead + hl) * headDim + d] =
        outputs[row * dPad + d];
  }
}

// A dense GEMM on the tensor-core kernel: output [rows][n] f32 = input [rows][k] . weights [n][k]^T.
void denseGemm(DType dtype, const void* weights, int n, int k, const void* input, int rows, float* output,
               int multiprocessors, cudaStream_t stream) {
  GroupedGemm gemm;
  gemm.dtype = dtype;
  gemm.weights = weights;
  gemm.groupStride = static_cast<size_t>(n) * k;  // one group: never stepped
  gemm.n = n;
  gemm.k = k;
  gemm.input = input;
  gemm.inputStride = k;
  gemm.rows = rows;
  gemm.tileRows = mmaTileRows(rows);
  gemm.maxTiles = (rows + gemm.tileRows - 1) / gemm.tileRows;
  gemm.output = output;
  gemm.outputStride = n;
  gemm.multiprocessors = multiprocessors;
  launchGemmMma(gemm, Epilogue::Scaled, stream);
}

template <typename T, typename KvT>
void enqueueFor(const PrefillAttention& a, cudaStream_t stream) {
  const int dPad = paddedDimension(a.headDim);
  const int context = a.position + a.rows;
  const int cPad = paddedDimension(context);
  const int groupSize = a.heads / a.kvHeads;
  const size_t element = sizeof(T);
  // Per score row: its scores (f32, at most cPad), probabilities, query and output.
  const size_t perRow = static_cast<size_t>(cPad) * (4 + element) + static_cast<size_t>(dPad) * (element + 4);
  const int blockRows =
      static_cast<int>(std::max<size_t>(1, std::min<size_t>(a.rows, kScratchBudget / (groupSize * perRow))));
  const size_t scoreRows = static_cast<size_t>(groupSize) * blockRows;
  const StreamBuffer keys(static_cast<size_t>(cPad) * dPad * element, stream, "prefill attention keys");
  const StreamBuffer values(static_cast<size_t>(dPad) * cPad * element, stream, "prefill attention values");
  const StreamBuffer queries(scoreRows * dPad * element, stream, "prefill attention queries");
  const StreamBuffer scores(scoreRows * cPad * 4, stream, "prefill attention scores");
  const StreamBuffer probs(scoreRows * cPad * element, stream, "prefill attention probabilities");
  const StreamBuffer outputs(scoreRows * dPad * 4, stream, "prefill attention outputs");
  for (int kvHead = 0; kvHead < a.kvHeads; ++kvHead) {
    const int firstHead = kvHead * groupSize;
    gatherKeysKernel<T, KvT><<<gridFor(static_cast<long long>(cPad) * dPad), kThreads, 0, stream>>>(
        static_cast<const KvT*>(a.slot.keys), a.slot.keyWidth, a.blockTable, kvHead, a.headDim, context, cPad, dPad,
        keys.as<T>());
    gatherValuesKernel<T, KvT><<<gridFor(static_cast<long long>(cPad) * dPad), kThreads, 0, stream>>>(
        static_cast<const KvT*>(a.slot.values), a.slot.valueWidth, a.blockTable, kvHead, a.headDim, context, cPad,
        dPad, values.as<T>());
    checkCuda(cudaGetLastError(), "launching the prefill attention gathers");
    for (int first = 0; first < a.rows; first += blockRows) {
      const int rows = std::min(blockRows, a.rows - first);
      const int gemmRows = groupSize * rows;
      // The block's last row sees the most keys: the scores GEMM multiplies those only.
      const int blockKeys = paddedDimension(a.position + first + rows);
      gatherQueriesKernel<T><<<gridFor(static_cast<long long>(gemmRows) * dPad), kThreads, 0, stream>>>(
          a.query + static_cast<size_t>(first) * a.queryStride, a.queryStride, firstHead, groupSize, a.headDim, rows,
          dPad, queries.as<T>());
      checkCuda(cudaGetLastError(), "launching the prefill attention query gather");
      denseGemm(a.dtype, keys.as<void>(), blockKeys, dPad, queries.as<void>(), gemmRows, scores.as<float>(),
                a.multiprocessors, stream);
      causalSoftmaxKernel<T><<<gemmRows, kThreads, 0, stream>>>(scores.as<float>(), blockKeys, probs.as<T>(), cPad,
                                                                rows, a.position + first, a.window, a.chunk,
                                                                a.temperatureFloor, a.temperatureScale, a.scale,
                                                                a.sinks, firstHead);
      checkCuda(cudaGetLastError(), "launching the prefill attention softmax");
      denseGemm(a.dtype, values.as<void>(), dPad, cPad, probs.as<void>(), gemmRows, outputs.as<float>(),
                a.multiprocessors, stream);
      scatterOutputsKernel<<<gridFor(static_cast<long long>(gemmRows) * a.headDim), kThreads, 0, stream>>>(
          outputs.as<float>(), dPad, firstHead, groupSize, a.headDim, rows,
          a.out + static_cast<size_t>(first) * a.outStride, a.outStride);
      checkCuda(cudaGetLastError(), "launching the prefill attention output scatter");
    }
  }
}

}  // namespace

void enqueuePrefillAttention(const PrefillAttention& attention, cudaStream_t stream) {
  if (attention.rows <= 0) return;
  // Off by default until the GPU suites have held it to the two-GEMM path and the CPU (test/77 runs both).
  const char* flash = std::getenv("DYNAMOE_FLASH_PREFILL");
  if (flash != nullptr && std::string(flash) == "1" && flashPrefillApplies(attention)) {
    enqueueFlashPrefillAttention(attention, stream);
    return;
  }
  const bool bf16Cache = attention.slot.dtype == DType::BF16;
  if (attention.dtype == DType::F16) {
    bf16Cache ? enqueueFor<__half, __nv_bfloat16>(attention, stream) : enqueueFor<__half, float>(attention, stream);
  } else if (attention.dtype == DType::BF16) {
    bf16Cache ? enqueueFor<__nv_bfloat16, __nv_bfloat16>(attention, stream)
              : enqueueFor<__nv_bfloat16, float>(attention, stream);
  } else {
    throw Error(code::kInternal, "prefill attention on tensor cores takes f16 or bf16 operands");
  }
}

}  // namespace dynamoe::cuda
