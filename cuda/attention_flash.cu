// Prefill attention as one fused tensor-core kernel (flash attention, FlashAttention-2's scheme): a block of 4 warps
// takes 64 query rows of one head; it walks the keys its rows can see in tiles of 64, converting each tile of keys
// and values from the f32 KV pool to the GEMM dtype in shared memory, and keeps a running softmax per row (max and
// sum in fp32, the output rescaled when the max grows). Scores never reach memory: S = Q K^T and O += P V stay in
// registers (mma.sync m16n8k16, the probabilities reused as A fragments). The sink joins the denominator at the end.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <mutex>

#include "attention_prefill.h"
#include "cuda_check.h"
#include "element_types.cuh"
#include "mma.cuh"

namespace dynamoe::cuda {

namespace {

constexpr int kRowsPerBlock = 64;  // query rows: 16 per warp
constexpr int kKeysPerTile = 64;
constexpr int kWarps = 4;
constexpr int kFlashThreads = kWarps * 32;
constexpr int kPadElements = 8;  // 16 bytes past each shared row: ldmatrix's 8 row addresses land on distinct banks

struct FlashArgs {
  const float* query;
  size_t queryStride;
  float* out;
  size_t outStride;
  const void* keys;  // the cache's KvT
  size_t keyStride;
  const void* values;
  size_t valueStride;
  const int32_t* blockTable;
  int rows, position, heads, kvHeads, headDim, window;
  float scale;
  const float* sinks;
};

template <int D>
constexpr size_t sharedBytes(size_t element) {
  return static_cast<size_t>(3) * kRowsPerBlock * (D + kPadElements) * element;
}

__device__ __forceinline__ size_t poolRow(const int32_t* table, int p) {
  return static_cast<size_t>(table[p / kDeviceBlockTokens]) * kDeviceBlockTokens + p % kDeviceBlockTokens;
}

// Two floats as one register of two 16-bit values, the first in the low half (the fragments' column order).
template <typename T>
__device__ __forceinline__ uint32_t packPair(float low, float high) {
  const T a = ElementOps<T>::fromFloat(low);
  const T b = ElementOps<T>::fromFloat(high);
  return static_cast<uint32_t>(reinterpret_cast<const uint16_t&>(a)) |
         (static_cast<uint32_t>(reinterpret_cast<const uint16_t&>(b)) << 16);
}

// Fills a [64][D] shared tile of the GEMM dtype from 64 rows of S (f32 queries, the cache's KvT): row i is
// rowAt(i) (null: zeros), its first headDim values, zero past them. Each thread converts 8 values at a time.
template <typename T, int D, typename S, typename RowAt>
__device__ __forceinline__ void fillTile(T* tile, const RowAt& rowAt, int headDim) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < kRowsPerBlock * kChunks; i += kFlashThreads) {
    const int row = i / kChunks;
    const int first = (i % kChunks) * 8;
    const S* source = rowAt(row);
    float v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      v[e] = source != nullptr && first + e < headDim ? ElementOps<S>::toFloat(source[first + e]) : 0.0f;
    }
    const uint4 packed{packPair<T>(v[0], v[1]), packPair<T>(v[2], v[3]), packPair<T>(v[4], v[5]),
                       packPair<T>(v[6], v[7])};
    mma::storeShared16(mma::sharedAddress(tile + row * (D + kPadElements) + first), packed);
  }
}

template <typename T, int D, typename KvT>
__global__ void __launch_bounds__(kFlashThreads) flashPrefillKernel(FlashArgs a) {
  constexpr int kPitch = D + kPadElements;
  extern __shared__ __align__(16) unsigned char shared[];
  T* qTile = reinterpret_cast<T*>(shared);
  T* kTile = qTile + kRowsPerBlock * kPitch;
  T* vTile = kTile + kKeysPerTile * kPitch;

  const int head = blockIdx.y;
  const int kvHead = head / (a.heads / a.kvHeads);
  const int firstRow = blockIdx.x * kRowsPerBlock;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int t = lane % 4;

  fillTile<T, D, float>(qTile, [&](int r) -> const float* {
    return firstRow + r < a.rows ? a.query + static_cast<size_t>(firstRow + r) * a.queryStride +
                                       static_cast<size_t>(head) * a.headDim
                                 : nullptr;
  }, a.headDim);
  __syncthreads();
  // This warp's 16 query rows as A fragments, D / 16 of them (ldmatrix x4: lane l gives row l % 16, column (l / 16) * 8).
  uint32_t q[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    mma::loadMatrixX4(q[kk], mma::sharedAddress(qTile + (warp * 16 + lane % 16) * kPitch + kk * 16 + (lane / 16) * 8));
  }

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float rowMax[2] = {-INFINITY, -INFINITY};  // rows g and g + 8 of the warp's 16
  float rowSum[2] = {0.0f, 0.0f};            // this thread's columns only; the quad's four are added at the end
  const int rowPosition[2] = {a.position + firstRow + warp * 16 + g, a.position + firstRow + warp * 16 + g + 8};

  // The keys any row of the block can see: up to its last row's position, from its first row's window on.
  const int lastRow = min(firstRow + kRowsPerBlock, a.rows) - 1;
  const int lastKey = a.position + lastRow;
  const int firstKey = a.window > 0 ? max(0, a.position + firstRow - a.window + 1) : 0;
  for (int tileStart = firstKey / kKeysPerTile * kKeysPerTile; tileStart <= lastKey; tileStart += kKeysPerTile) {
    __syncthreads();  // every warp is done with the previous tile
    fillTile<T, D, KvT>(kTile, [&](int j) -> const KvT* {
      const int p = tileStart + j;
      return p <= lastKey ? static_cast<const KvT*>(a.keys) + poolRow(a.blockTable, p) * a.keyStride +
                                static_cast<size_t>(kvHead) * a.headDim
                          : nullptr;
    }, a.headDim);
    fillTile<T, D, KvT>(vTile, [&](int j) -> const KvT* {
      const int p = tileStart + j;
      return p <= lastKey ? static_cast<const KvT*>(a.values) + poolRow(a.blockTable, p) * a.valueStride +
                                static_cast<size_t>(kvHead) * a.headDim
                          : nullptr;
    }, a.headDim);
    __syncthreads();

    // S = Q K^T for 16 rows x 64 keys: keys are the B operand's n, stored [key][d] (k-contiguous).
    float s[kKeysPerTile / 8][4];
#pragma unroll
    for (int n = 0; n < kKeysPerTile / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kKeysPerTile / 16; ++np) {
        uint32_t b[4];
        const int matrix = lane / 8;
        mma::loadMatrixX4(b, mma::sharedAddress(kTile + (np * 16 + (matrix >> 1) * 8 + lane % 8) * kPitch + kk * 16 +
                                                (matrix & 1) * 8));
        mma::mmaM16N8K16<T>(s[2 * np], q[kk], b[0], b[1]);
        mma::mmaM16N8K16<T>(s[2 * np + 1], q[kk], b[2], b[3]);
      }
    }

    // Scale, mask (causal and window), and the running softmax of each of the thread's two rows.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float tileMax = -INFINITY;
#pragma unroll
      for (int n = 0; n < kKeysPerTile / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = tileStart + n * 8 + 2 * t + e;
          const int position = rowPosition[half];
          const bool visible = key <= position && (a.window == 0 || key > position - a.window);
          float& score = s[n][2 * half + e];
          score = visible ? score * a.scale : -INFINITY;
          tileMax = fmaxf(tileMax, score);
        }
      }
      tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
      tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 2));
      const float newMax = fmaxf(rowMax[half], tileMax);
      // Nothing visible yet: no rescale and no probabilities (exp of -inf - -inf would be NaN).
      const float rescale = newMax == -INFINITY || rowMax[half] == -INFINITY ? 0.0f : expf(rowMax[half] - newMax);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kKeysPerTile / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& score = s[n][2 * half + e];
          score = newMax == -INFINITY ? 0.0f : expf(score - newMax);
          sum += score;
        }
      }
      rowSum[half] = rowSum[half] * rescale + sum;
      rowMax[half] = newMax;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * half] *= rescale;
        o[n][2 * half + 1] *= rescale;
      }
    }

    // O += P V: the probabilities' C fragments are the A fragments of a 16-key step; V [key][d] is loaded transposed.
#pragma unroll
    for (int ks = 0; ks < kKeysPerTile / 16; ++ks) {
      const uint32_t p[4] = {packPair<T>(s[2 * ks][0], s[2 * ks][1]), packPair<T>(s[2 * ks][2], s[2 * ks][3]),
                             packPair<T>(s[2 * ks + 1][0], s[2 * ks + 1][1]),
                             packPair<T>(s[2 * ks + 1][2], s[2 * ks + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        const int matrix = lane / 8;
        mma::loadMatrixX4Transposed(
            b, mma::sharedAddress(vTile + (ks * 16 + (matrix & 1) * 8 + lane % 8) * kPitch + dp * 16 + (matrix >> 1) * 8));
        mma::mmaM16N8K16<T>(o[2 * dp], p, b[0], b[1]);
        mma::mmaM16N8K16<T>(o[2 * dp + 1], p, b[2], b[3]);
      }
    }
  }

  // The quad's sums, the sink, and the normalised rows out.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float sum = rowSum[half];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    float rescale = 1.0f;
    if (a.sinks != nullptr) {
      const float sink = a.sinks[head];
      const float finalMax = fmaxf(rowMax[half], sink);
      rescale = rowMax[half] == -INFINITY ? 0.0f : expf(rowMax[half] - finalMax);
      sum = sum * rescale + expf(sink - finalMax);
    }
    const float inverse = rescale / sum;
    const int row = firstRow + warp * 16 + g + 8 * half;
    if (row >= a.rows) continue;
    float* out = a.out + static_cast<size_t>(row) * a.outStride + static_cast<size_t>(head) * a.headDim;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int d = n * 8 + 2 * t + e;
        if (d < a.headDim) out[d] = o[n][2 * half + e] * inverse;
      }
    }
  }
}

template <typename T, int D, typename KvT>
void launch(const FlashArgs& args, cudaStream_t stream) {
  const size_t bytes = sharedBytes<D>(sizeof(T));
  static std::once_flag configured;
  std::call_once(configured, [&] {
    checkCuda(cudaFuncSetAttribute(flashPrefillKernel<T, D, KvT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(bytes)),
              "allowing the flash attention kernel its shared memory");
  });
  const dim3 grid((args.rows + kRowsPerBlock - 1) / kRowsPerBlock, args.heads);
  flashPrefillKernel<T, D, KvT><<<grid, kFlashThreads, bytes, stream>>>(args);
  checkCuda(cudaGetLastError(), "launching the flash attention kernel");
}

template <typename T, typename KvT>
void launchFor(const FlashArgs& args, cudaStream_t stream) {
  if (args.headDim <= 64) {
    launch<T, 64, KvT>(args, stream);
  } else {
    launch<T, 128, KvT>(args, stream);
  }
}

}  // namespace

bool flashPrefillApplies(const PrefillAttention& attention) {
  // Llama 4's chunks and temperature take the two-GEMM path.
  return attention.headDim <= kFlashMaxHeadDim && attention.heads % attention.kvHeads == 0 &&
         (attention.dtype == DType::F16 || attention.dtype == DType::BF16) && attention.chunk == 0 &&
         attention.temperatureFloor == 0;
}

void enqueueFlashPrefillAttention(const PrefillAttention& attention, cudaStream_t stream) {
  if (attention.rows <= 0) return;
  if (!flashPrefillApplies(attention)) throw Error(code::kInternal, "flash attention: unsupported shape or dtype");
  FlashArgs args{};
  args.query = attention.query;
  args.queryStride = attention.queryStride;
  args.out = attention.out;
  args.outStride = attention.outStride;
  args.keys = attention.slot.keys;
  args.keyStride = static_cast<size_t>(attention.slot.keyWidth);
  args.values = attention.slot.values;
  args.valueStride = static_cast<size_t>(attention.slot.valueWidth);
  args.blockTable = attention.blockTable;
  args.rows = attention.rows;
  args.position = attention.position;
  args.heads = attention.heads;
  args.kvHeads = attention.kvHeads;
  args.headDim = attention.headDim;
  args.window = attention.window;
  args.scale = attention.scale;
  args.sinks = attention.sinks;
  const bool bf16Cache = attention.slot.dtype == DType::BF16;
  if (attention.dtype == DType::F16) {
    bf16Cache ? launchFor<__half, __nv_bfloat16>(args, stream) : launchFor<__half, float>(args, stream);
  } else {
    bf16Cache ? launchFor<__nv_bfloat16, __nv_bfloat16>(args, stream) : launchFor<__nv_bfloat16, float>(args, stream);
  }
}

}  // namespace dynamoe::cuda
