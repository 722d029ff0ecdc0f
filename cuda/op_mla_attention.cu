// Multi-head latent attention (DeepSeek-V2/V3 MLA, absorbed form) on the GPU, native/cpu/op_mla_attention.cpp's
// contract: the step's [latent | keyRope] rows join the cache slot; each head's query is taken into the latent space
// (queryNope . W_uk, then its roped part appended), attends causally over the sequence's latent rows (one shared
// "kv head", the latent serving as value too: attention_kernels.h's split-key kernel), and its attended latent is
// taken out by W_uv into the output row.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "attention_kernels.h"
#include "cuda_check.h"
#include "device_graph_ops.h"
#include "device_weights.h"
#include "element_types.cuh"
#include "moe_kernels.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {

namespace {

constexpr int kMlaHeadsPerBlock = 8;        // query heads sharing each latent row read of one attention block
constexpr int kMlaKeySlices = 18;           // latent rows up to 576 floats (DeepSeek: 512 + 64)
constexpr int kMlaValueSlots = 4;           // attended latents up to 512 floats
constexpr int kMaxLatentRow = 32 * kMlaKeySlices;
constexpr int kMaxLatent = kAttentionThreads * kMlaValueSlots;
constexpr int kProjectRows = 8;             // rows sharing each weight row read of one projection block
constexpr int kProjectThreads = 256;
constexpr int kProjectWarps = kProjectThreads / 32;
constexpr int kMaxProjectCols = 1536;       // kProjectRows rows of this many floats: 48 KiB of shared memory
constexpr size_t kScratchBudget = size_t{256} << 20;  // bytes of per-batch scratch before rows go in batches
constexpr int kCopyThreads = 256;

// Writes row t's [latent (latentWidth) | keyRope (ropeDim)] into the pool row of its position, as the cache's KvT.
template <typename KvT>
__global__ void __launch_bounds__(kCopyThreads)
    appendLatentKernel(const float* latent, size_t latentStride, const float* keyRope, size_t keyRopeStride,
                       int latentWidth, int ropeDim, const int32_t* rowPositions, const int32_t* rowSegments,
                       const int32_t* blockTables, int blockTableWidth, KvT* poolKeys, size_t poolKeyStride) {
  const int t = blockIdx.x;
  const int position = rowPositions[t];
  const int32_t* table = blockTables + static_cast<size_t>(rowSegments[t]) * blockTableWidth;
  const size_t poolRow = static_cast<size_t>(table[position / kDeviceBlockTokens]) * kDeviceBlockTokens +
                         position % kDeviceBlockTokens;
  KvT* out = poolKeys + poolRow * poolKeyStride;
  const float* latentRow = latent + static_cast<size_t>(t) * latentStride;
  const float* ropeRow = keyRope + static_cast<size_t>(t) * keyRopeStride;
  for (int c = threadIdx.x; c < latentWidth + ropeDim; c += kCopyThreads) {
    out[c] = ElementOps<KvT>::fromFloat(c < latentWidth ? latentRow[c] : ropeRow[c - latentWidth]);
  }
}

// Each head's roped query after its absorbed part: absorbed[r][h * rowWidth + latentWidth + i] = queryRope[r][h *
// ropeDim + i]. Grid: rows.
__global__ void __launch_bounds__(kCopyThreads)
    copyQueryRopeKernel(const float* queryRope, size_t queryRopeStride, int heads, int ropeDim, int latentWidth,
                        float* absorbed) {
  const int r = blockIdx.x;
  const int rowWidth = latentWidth + ropeDim;
  const float* in = queryRope + static_cast<size_t>(r) * queryRopeStride;
  float* out = absorbed + static_cast<size_t>(r) * heads * rowWidth;
  for (int i = threadIdx.x; i < heads * ropeDim; i += kCopyThreads) {
    const int h = i / ropeDim;
    out[static_cast<size_t>(h) * rowWidth + latentWidth + i % ropeDim] = in[i];
  }
}

// One per-head product out[r][h][o] = sum_i in[r][h][i] * W[h * outPerHead + o][i].
struct HeadProjection {
  const float* in = nullptr;  // head h of row r at in + r * inStride + h * inWidth (inWidth floats)
  size_t inStride = 0;
  int inWidth = 0;
  const void* weights = nullptr;  // [heads * outPerHead][paddedCols] of the element type, zero past inWidth
  int paddedCols = 0;
  int outPerHead = 0;
  float* out = nullptr;  // out + r * outStride + h * outHeadStride + o
  size_t outStride = 0;
  int outHeadStride = 0;
  int rows = 0;
};

// Sum of `value` over the warp (xor butterfly: the same bits in every lane).
__device__ __forceinline__ float projectWarpSum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Grid: (ceil(rows / kProjectRows), heads); dynamic shared memory kProjectRows * paddedCols floats. The block's
// rows are staged in shared memory (zero padded); a warp per output column streams its weight row once (16-byte
// loads, coalesced) for all of them.
template <typename T>
__global__ void __launch_bounds__(kProjectThreads) headProjectKernel(HeadProjection p) {
  extern __shared__ float4 tileStorage[];
  float* tile = reinterpret_cast<float*>(tileStorage);  // [kProjectRows][paddedCols]
  const int head = blockIdx.y;
  const int firstRow = blockIdx.x * kProjectRows;
  const int rows = min(kProjectRows, p.rows - firstRow);
  for (int i = threadIdx.x; i < kProjectRows * p.paddedCols; i += kProjectThreads) {
    const int r = i / p.paddedCols;
    const int c = i % p.paddedCols;
    tile[i] = r < rows && c < p.inWidth
                  ? p.in[static_cast<size_t>(firstRow + r) * p.inStride + static_cast<size_t>(head) * p.inWidth + c]
                  : 0.0f;
  }
  __syncthreads();
  constexpr int kElements = kElementsPerVector<T>;
  const int vectors = p.paddedCols / kElements;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  for (int o = warp; o < p.outPerHead; o += kProjectWarps) {
    const T* weightRow =
        static_cast<const T*>(p.weights) + (static_cast<size_t>(head) * p.outPerHead + o) * p.paddedCols;
    const uint4* weights = reinterpret_cast<const uint4*>(weightRow);
    float sums[kProjectRows];
#pragma unroll
    for (int r = 0; r < kProjectRows; ++r) sums[r] = 0.0f;
    for (int v = lane; v < vectors; v += 32) {
      float w[kElements];
      widenVector<T>(weights[v], w);
#pragma unroll
      for (int r = 0; r < kProjectRows; ++r) {
        const float4* x = reinterpret_cast<const float4*>(tile + r * p.paddedCols + v * kElements);
#pragma unroll
        for (int q = 0; q < kElements / 4; ++q) {
          const float4 x4 = x[q];
          sums[r] = fmaf(x4.x, w[4 * q], sums[r]);
          sums[r] = fmaf(x4.y, w[4 * q + 1], sums[r]);
          sums[r] = fmaf(x4.z, w[4 * q + 2], sums[r]);
          sums[r] = fmaf(x4.w, w[4 * q + 3], sums[r]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kProjectRows; ++r) {
      const float sum = projectWarpSum(sums[r]);
      if (lane == r && r < rows) {
        p.out[static_cast<size_t>(firstRow + r) * p.outStride + static_cast<size_t>(head) * p.outHeadStride + o] = sum;
      }
    }
  }
}

void launchHeadProjection(const HeadProjection& projection, int heads, DType dtype, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((projection.rows + kProjectRows - 1) / kProjectRows),
                  static_cast<unsigned>(heads));
  const size_t shared = static_cast<size_t>(kProjectRows) * projection.paddedCols * sizeof(float);
  switch (dtype) {
    case DType::F32: headProjectKernel<float><<<grid, kProjectThreads, shared, stream>>>(projection); break;
    case DType::F16: headProjectKernel<__half><<<grid, kProjectThreads, shared, stream>>>(projection); break;
    case DType::BF16: headProjectKernel<__nv_bfloat16><<<grid, kProjectThreads, shared, stream>>>(projection); break;
  }
}

std::string describe(const MlaAttentionNode& node) {
  return "MLA attention (heads " + std::to_string(node.heads) + ", nope " + std::to_string(node.nopeDim) +
         ", rope " + std::to_string(node.ropeDim) + ", kv lora rank " + std::to_string(node.kvLoraRank) +
         ", value dim " + std::to_string(node.valueDim) + ", slot " + std::to_string(node.slot) + ")";
}

class MlaAttentionOp final : public DeviceOp {
 public:
  MlaAttentionOp(const MlaAttentionNode& node, const DeviceOpContext& context)
      : s_(node), dtype_(context.dtype) {
    s_.keyUp = {};
    s_.valueUp = {};
    const GraphLayout& layout = context.layout;
    if (s_.heads <= 0 || s_.nopeDim <= 0 || s_.ropeDim <= 0 || s_.kvLoraRank <= 0 || s_.valueDim <= 0) {
      throw Error(code::kShape, describe(s_) + ": every size must be positive");
    }
    const int rowWidth = s_.kvLoraRank + s_.ropeDim;
    if (s_.kvLoraRank > kMaxLatent || rowWidth > kMaxLatentRow) {
      throw Error(code::kUnsupported, describe(s_) + ": CUDA MLA supports kv lora ranks up to " +
                                          std::to_string(kMaxLatent) + " and latent rows up to " +
                                          std::to_string(kMaxLatentRow));
    }
    if (paddedDimension(s_.nopeDim) > kMaxProjectCols || paddedDimension(s_.kvLoraRank) > kMaxProjectCols) {
      throw Error(code::kUnsupported, describe(s_) + ": nope dim too wide for the CUDA projections");
    }
    if (s_.slot < 0 || s_.slot >= static_cast<int>(layout.kvWidths.size()) || layout.kvWidths[s_.slot] != rowWidth ||
        (!layout.kvValueWidths.empty() && layout.kvValueWidths[s_.slot] != 0)) {
      throw Error(code::kShape,
                  describe(s_) + ": cache slot missing or not a keys-only slot of kv lora rank + rope dim");
    }
    const int buffers = static_cast<int>(layout.bufferWidths.size());
    const auto check = [&](int buffer, int width, const char* what) {
      if (buffer < 0 || buffer >= buffers || layout.bufferWidths[buffer] < width) {
        throw Error(code::kShape, describe(s_) + ": " + what + " buffer missing or narrower than " +
                                      std::to_string(width));
      }
    };
    check(s_.queryNope, s_.heads * s_.nopeDim, "query nope");
    check(s_.queryRope, s_.heads * s_.ropeDim, "query rope");
    check(s_.latent, s_.kvLoraRank, "latent");
    check(s_.keyRope, s_.ropeDim, "key rope");
    check(s_.output, s_.heads * s_.valueDim, "output");
    if (node.keyUp.data == nullptr || node.valueUp.data == nullptr) {
      throw Error(code::kShape, describe(s_) + ": missing key-up or value-up weights");
    }
    // Row h * kvLoraRank + r of keyUp is head h's W_uk column r over nopeDim; row h * valueDim + v of valueUp is
    // head h's W_uv row v over kvLoraRank. Each row padded to whole 128 columns with zeros.
    keyUpCols_ = paddedDimension(s_.nopeDim);
    valueUpCols_ = paddedDimension(s_.kvLoraRank);
    const int keyUpRows = s_.heads * s_.kvLoraRank;
    const int valueUpRows = s_.heads * s_.valueDim;
    // The per-head kernels read plain values: quantized up-projections (small beside the experts) are dequantized
    // on the host and uploaded in the model's dtype.
    std::vector<float> storage;
    keyUp_ = uploadMatrices({plainSource(node.keyUp, keyUpRows, s_.nopeDim, &storage)}, keyUpRows,
                            paddedDimension(keyUpRows), s_.nopeDim, keyUpCols_, dtype_, "uploading MLA key-up weights");
    valueUp_ = uploadMatrices({plainSource(node.valueUp, valueUpRows, s_.kvLoraRank, &storage)}, valueUpRows,
                              paddedDimension(valueUpRows), s_.kvLoraRank, valueUpCols_, dtype_,
                              "uploading MLA value-up weights");
  }

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("mla_attention", step.tokens);
    if (step.tokens == 0) return;
    const int latentWidth = s_.kvLoraRank;
    const int rowWidth = latentWidth + s_.ropeDim;
    const KvSlotView slot = step.kvPool->slot(s_.slot);
    if (slot.keyWidth != rowWidth) {
      throw Error(code::kShape, describe(s_) + ": the KV pool's slot is not kv lora rank + rope dim wide");
    }

    // (a) The step's latent rows join the cache first: its rows attend to each other through it.
    const auto append = [&](auto* keys) {
      appendLatentKernel<<<step.tokens, kCopyThreads, 0, step.stream>>>(
          step.buffers[s_.latent], step.strides[s_.latent], step.buffers[s_.keyRope], step.strides[s_.keyRope],
          latentWidth, s_.ropeDim, step.rowPositions, step.rowSegments, step.blockTables, step.blockTableWidth, keys,
          slot.keyWidth);
    };
    if (slot.dtype == DType::BF16) {
      append(static_cast<__nv_bfloat16*>(slot.keys));
    } else {
      append(static_cast<float*>(slot.keys));
    }
    checkCuda(cudaGetLastError(), "launching the MLA cache append");

    // The executor's bound on every row's keys (position + 1), rounded up for a captured step.
    const int context = std::max(step.maxContext, 1);
    const int groupBlocks = (s_.heads + kMlaHeadsPerBlock - 1) / kMlaHeadsPerBlock;
    const SplitPlan plan = planSplits(context);

    // Rows go in batches whose scratch (absorbed queries, chunk partials, attended latents) fits the budget; the
    // batches reuse it in stream order.
    const size_t rowFloats = static_cast<size_t>(s_.heads) *
                             (rowWidth + static_cast<size_t>(plan.chunks) * (latentWidth + 2) + latentWidth);
    const int batchRows = static_cast<int>(
        std::max<size_t>(1, std::min<size_t>(step.tokens, kScratchBudget / (rowFloats * sizeof(float)))));
    const size_t partials = static_cast<size_t>(batchRows) * s_.heads * plan.chunks;
    // Op-local scratch, freed in stream order when this op's kernels are done: the layers of a step reuse it.
    StepArena scratch(step.stream);
    float* absorbed = scratch.take<float>(static_cast<size_t>(batchRows) * s_.heads * rowWidth,
                                              "MLA absorbed queries");
    float* partialMax = scratch.take<float>(partials, "MLA partial maxima");
    float* partialSum = scratch.take<float>(partials, "MLA partial sums");
    float* partialAcc = scratch.take<float>(partials * latentWidth, "MLA partial latents");
    float* attended = scratch.take<float>(static_cast<size_t>(batchRows) * s_.heads * latentWidth,
                                              "MLA attended latents");

    for (int firstRow = 0; firstRow < step.tokens; firstRow += batchRows) {
      const int rows = std::min(batchRows, step.tokens - firstRow);

      // (b) Absorbed queries [rows][heads][latent | rope]: queryNope . W_uk per head, then the roped part.
      HeadProjection absorb;
      absorb.in = step.buffers[s_.queryNope] + static_cast<size_t>(firstRow) * step.strides[s_.queryNope];
      absorb.inStride = step.strides[s_.queryNope];
      absorb.inWidth = s_.nopeDim;
      absorb.weights = keyUp_.as<void>();
      absorb.paddedCols = keyUpCols_;
      absorb.outPerHead = latentWidth;
      absorb.out = absorbed;
      absorb.outStride = static_cast<size_t>(s_.heads) * rowWidth;
      absorb.outHeadStride = rowWidth;
      absorb.rows = rows;
      launchHeadProjection(absorb, s_.heads, dtype_, step.stream);
      checkCuda(cudaGetLastError(), "launching the MLA query absorption");
      copyQueryRopeKernel<<<rows, kCopyThreads, 0, step.stream>>>(
          step.buffers[s_.queryRope] + static_cast<size_t>(firstRow) * step.strides[s_.queryRope],
          step.strides[s_.queryRope], s_.heads, s_.ropeDim, latentWidth, absorbed);
      checkCuda(cudaGetLastError(), "launching the MLA query rope copy");

      // (c) Causal attention over the latent rows: one shared kv head of width rowWidth, its first kvLoraRank
      // floats the value.
      SplitAttention attention;
      attention.query = absorbed;
      attention.queryStride = static_cast<size_t>(s_.heads) * rowWidth;
      attention.keys = slot.keys;
      attention.values = slot.keys;
      attention.keyRowStride = static_cast<size_t>(slot.keyWidth);
      attention.valueRowStride = static_cast<size_t>(slot.keyWidth);
      attention.blockTables = step.blockTables;
      attention.blockTableWidth = step.blockTableWidth;
      attention.rowPositions = step.rowPositions;
      attention.rowSegments = step.rowSegments;
      attention.firstRow = firstRow;
      attention.heads = s_.heads;
      attention.kvHeads = 1;
      attention.keyDim = rowWidth;
      attention.valueDim = latentWidth;
      attention.groupBlocks = groupBlocks;
      attention.window = 0;
      attention.scale = s_.scale;  // as the CPU op: the node's scale, used as given
      attention.chunkKeys = plan.chunkKeys;
      attention.chunks = plan.chunks;
      attention.partialMax = partialMax;
      attention.partialSum = partialSum;
      attention.partialAcc = partialAcc;

      AttentionCombine combine;
      combine.partialMax = partialMax;
      combine.partialSum = partialSum;
      combine.partialAcc = partialAcc;
      combine.rowPositions = step.rowPositions;
      combine.firstRow = firstRow;
      combine.heads = s_.heads;
      combine.valueDim = latentWidth;
      combine.window = 0;
      combine.chunkKeys = plan.chunkKeys;
      combine.chunks = plan.chunks;
      combine.sinks = nullptr;
      combine.out = attended;
      combine.outStride = static_cast<size_t>(s_.heads) * latentWidth;
      if (slot.dtype == DType::BF16) {
        launchSplitAttention<kMlaHeadsPerBlock, kMlaKeySlices, kMlaValueSlots, __nv_bfloat16>(attention, combine, rows,
                                                                                              step.stream);
      } else {
        launchSplitAttention<kMlaHeadsPerBlock, kMlaKeySlices, kMlaValueSlots, float>(attention, combine, rows,
                                                                                      step.stream);
      }
      checkCuda(cudaGetLastError(), "launching MLA attention");

      // (d) Head outputs: attended latent . W_uv^T into the output row, head h at h * valueDim.
      HeadProjection expand;
      expand.in = attended;
      expand.inStride = static_cast<size_t>(s_.heads) * latentWidth;
      expand.inWidth = latentWidth;
      expand.weights = valueUp_.as<void>();
      expand.paddedCols = valueUpCols_;
      expand.outPerHead = s_.valueDim;
      expand.out = step.buffers[s_.output] + static_cast<size_t>(firstRow) * step.strides[s_.output];
      expand.outStride = step.strides[s_.output];
      expand.outHeadStride = s_.valueDim;
      expand.rows = rows;
      launchHeadProjection(expand, s_.heads, dtype_, step.stream);
      checkCuda(cudaGetLastError(), "launching the MLA value expansion");
    }
  }

  size_t weightBytes() const override { return keyUp_.bytes() + valueUp_.bytes(); }
  const char* name() const override { return "mla_attention"; }

 private:
  MlaAttentionNode s_;  // shapes only: the sources are read once, by the constructor
  DType dtype_;
  int keyUpCols_ = 0;
  int valueUpCols_ = 0;
  DeviceBuffer keyUp_;    // [heads * kvLoraRank (padded)][paddedDimension(nopeDim)]: per head W_uk^T
  DeviceBuffer valueUp_;  // [heads * valueDim (padded)][paddedDimension(kvLoraRank)]: per head W_uv
};

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const MlaAttentionNode& node, DeviceOpContext& context) {
  return std::make_unique<MlaAttentionOp>(node, context);
}

}  // namespace dynamoe::cuda
