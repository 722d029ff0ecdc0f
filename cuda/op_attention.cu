// Causal grouped-query attention on the GPU (native/cpu/op_attention.cpp's contract): the step's k and v rows are
// appended to the paged KV cache slot, then every query row attends to its sequence's positions 0 .. its own
// (the last `window` of them when windowed), with the per-head attention sinks joining the softmax denominator.
// The attention itself is attention_kernels.h's split-key kernel plus its fixed-order combine.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attention_kernels.h"
#include "attention_prefill.h"
#include "cuda_check.h"
#include "device_buffer.h"
#include "device_graph_ops.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {

namespace {

constexpr int kMaxHeadDim = 256;       // 8 key slices of 32 lanes, 2 value slots of kAttentionThreads
constexpr int kHeadsPerBlock = 16;     // most query heads of one kv head handled by one block
constexpr int kAppendThreads = 256;
constexpr size_t kScratchBudget = size_t{256} << 20;  // the partials of one launch

// Writes row t's key and value ([kvWidth] each) into the pool rows of its position, as the cache's KvT.
template <typename KvT>
__global__ void __launch_bounds__(kAppendThreads)
    appendKvKernel(const float* key, size_t keyStride, const float* value, size_t valueStride, int kvWidth,
                   const int32_t* rowPositions, const int32_t* rowSegments, const int32_t* blockTables,
                   int blockTableWidth, KvT* poolKeys, size_t poolKeyStride, KvT* poolValues,
                   size_t poolValueStride) {
  const int t = blockIdx.x;
  const int position = rowPositions[t];
  const int32_t* table = blockTables + static_cast<size_t>(rowSegments[t]) * blockTableWidth;
  const size_t poolRow = static_cast<size_t>(table[position / kDeviceBlockTokens]) * kDeviceBlockTokens +
                         position % kDeviceBlockTokens;
  const float* keyRow = key + static_cast<size_t>(t) * keyStride;
  const float* valueRow = value + static_cast<size_t>(t) * valueStride;
  KvT* keyOut = poolKeys + poolRow * poolKeyStride;
  KvT* valueOut = poolValues + poolRow * poolValueStride;
  for (int c = threadIdx.x; c < kvWidth; c += kAppendThreads) {
    keyOut[c] = ElementOps<KvT>::fromFloat(keyRow[c]);
    valueOut[c] = ElementOps<KvT>::fromFloat(valueRow[c]);
  }
}

// The split kernel specialised for the block's heads and the head width (key slices of 32 floats, value slots of
// kAttentionThreads).
template <int kGroup, int kKeySlices, typename KvT>
void launchFor(const SplitAttention& attention, const AttentionCombine& combine, int rows, cudaStream_t stream) {
  constexpr int kValueSlots = (kKeySlices * 32 + kAttentionThreads - 1) / kAttentionThreads;
  launchSplitAttention<kGroup, kKeySlices, kValueSlots, KvT>(attention, combine, rows, stream);
}

template <int kGroup, typename KvT>
void launchForGroup(const SplitAttention& attention, const AttentionCombine& combine, int rows, cudaStream_t stream) {
  switch ((attention.keyDim + 31) / 32) {
    case 1: launchFor<kGroup, 1, KvT>(attention, combine, rows, stream); break;
    case 2: launchFor<kGroup, 2, KvT>(attention, combine, rows, stream); break;
    case 3: launchFor<kGroup, 3, KvT>(attention, combine, rows, stream); break;
    case 4: launchFor<kGroup, 4, KvT>(attention, combine, rows, stream); break;
    case 5: launchFor<kGroup, 5, KvT>(attention, combine, rows, stream); break;
    case 6: launchFor<kGroup, 6, KvT>(attention, combine, rows, stream); break;
    case 7: launchFor<kGroup, 7, KvT>(attention, combine, rows, stream); break;
    default: launchFor<kGroup, 8, KvT>(attention, combine, rows, stream); break;  // the constructor allows no wider head
  }
}

// Query heads per block: the group's size rounded up to a power of two (the warp transpose-sum's value count), at
// most kHeadsPerBlock; larger groups take several blocks per kv head.
int headsPerBlockFor(int groupSize) {
  int heads = 1;
  while (heads < groupSize && heads < kHeadsPerBlock) heads *= 2;
  return heads;
}

template <typename KvT>
void launchAttention(const SplitAttention& attention, const AttentionCombine& combine, int headsPerBlock, int rows,
                     cudaStream_t stream) {
  switch (headsPerBlock) {
    case 1: launchForGroup<1, KvT>(attention, combine, rows, stream); break;
    case 2: launchForGroup<2, KvT>(attention, combine, rows, stream); break;
    case 4: launchForGroup<4, KvT>(attention, combine, rows, stream); break;
    case 8: launchForGroup<8, KvT>(attention, combine, rows, stream); break;
    default: launchForGroup<kHeadsPerBlock, KvT>(attention, combine, rows, stream); break;
  }
}

std::string describe(const AttentionNode& node) {
  return "attention (heads " + std::to_string(node.heads) + ", kv heads " + std::to_string(node.kvHeads) +
         ", head dim " + std::to_string(node.headDim) + ", slot " + std::to_string(node.slot) + ")";
}

class AttentionOp final : public DeviceOp {
 public:
  AttentionOp(const AttentionNode& node, const DeviceOpContext& context)
      : s_(node), dtype_(context.dtype), multiprocessors_(context.multiprocessors) {
    const GraphLayout& layout = context.layout;
    if (s_.heads <= 0 || s_.kvHeads <= 0 || s_.headDim <= 0 || s_.heads % s_.kvHeads != 0) {
      throw Error(code::kShape, describe(s_) + ": heads must be a positive multiple of kv heads, head dim positive");
    }
    if (s_.headDim > kMaxHeadDim) {
      throw Error(code::kUnsupported, describe(s_) + ": CUDA attention supports head dims up to " +
                                          std::to_string(kMaxHeadDim));
    }
    if (s_.window < 0 || s_.chunk < 0) throw Error(code::kShape, describe(s_) + ": negative sliding window or chunk");
    const int kvWidth = s_.kvHeads * s_.headDim;
    if (s_.slot < 0 || s_.slot >= static_cast<int>(layout.kvWidths.size())) {
      throw Error(code::kShape, describe(s_) + ": no such cache slot");
    }
    const int valueWidth = layout.kvValueWidths.empty() ? layout.kvWidths[s_.slot] : layout.kvValueWidths[s_.slot];
    if (layout.kvWidths[s_.slot] != kvWidth || valueWidth != kvWidth) {
      throw Error(code::kShape, describe(s_) + ": cache slot widths " + std::to_string(layout.kvWidths[s_.slot]) +
                                    "/" + std::to_string(valueWidth) + " are not kv heads x head dim " +
                                    std::to_string(kvWidth));
    }
    const int buffers = static_cast<int>(layout.bufferWidths.size());
    const auto check = [&](int buffer, int width, const char* what) {
      if (buffer < 0 || buffer >= buffers || layout.bufferWidths[buffer] < width) {
        throw Error(code::kShape, describe(s_) + ": " + what + " buffer missing or narrower than " +
                                      std::to_string(width));
      }
    };
    check(s_.query, s_.heads * s_.headDim, "query");
    check(s_.key, kvWidth, "key");
    check(s_.value, kvWidth, "value");
    check(s_.output, s_.heads * s_.headDim, "output");
    if (!s_.sinks.empty()) {
      if (static_cast<int>(s_.sinks.size()) != s_.heads) {
        throw Error(code::kShape, describe(s_) + ": " + std::to_string(s_.sinks.size()) + " sinks for " +
                                      std::to_string(s_.heads) + " heads");
      }
      sinks_ = DeviceBuffer(s_.sinks.size() * sizeof(float), "attention sinks");
      checkCuda(cudaMemcpy(sinks_.as<float>(), s_.sinks.data(), s_.sinks.size() * sizeof(float),
                           cudaMemcpyHostToDevice),
                "uploading attention sinks");
    }
    scale_ = s_.scale > 0.0f ? s_.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s_.headDim)));
  }

  void enqueue(DeviceStep& step) const override {
    NvtxRange range("attention", step.tokens);
    if (step.tokens == 0) return;
    const int kvWidth = s_.kvHeads * s_.headDim;
    const KvSlotView slot = step.kvPool->slot(s_.slot);
    if (slot.keyWidth != kvWidth || slot.valueWidth != kvWidth || slot.values == nullptr) {
      throw Error(code::kShape, describe(s_) + ": the KV pool's slot is not kv heads x head dim wide");
    }

    // (a) This step's keys and values join the cache first: its rows attend to each other through it.
    const auto append = [&](auto* keys, auto* values) {
      appendKvKernel<<<step.tokens, kAppendThreads, 0, step.stream>>>(
          step.buffers[s_.key], step.strides[s_.key], step.buffers[s_.value], step.strides[s_.value], kvWidth,
          step.rowPositions, step.rowSegments, step.blockTables, step.blockTableWidth, keys, slot.keyWidth, values,
          slot.valueWidth);
    };
    if (slot.dtype == DType::BF16) {
      append(static_cast<__nv_bfloat16*>(slot.keys), static_cast<__nv_bfloat16*>(slot.values));
    } else {
      append(static_cast<float*>(slot.keys), static_cast<float*>(slot.values));
    }
    checkCuda(cudaGetLastError(), "launching the attention cache append");

    // (b) Long prompt chunks of 16-bit models on tensor cores (two GEMMs per kv head); the other rows (decode, short
    // chunks, f32 models) by split-key attention over the cache, then the combine into the output rows.
    std::vector<std::pair<int, int>> splitRuns;  // [first row, rows) the split kernel takes
    for (size_t s = 0; s < step.segments.size(); ++s) {
      const DeviceSegmentRows& segment = step.segments[s];
      if (dtype_ != DType::F32 && segment.rows >= kPrefillAttentionMinRows) {
        PrefillAttention prefill;
        prefill.query = step.buffers[s_.query] + static_cast<size_t>(segment.firstRow) * step.strides[s_.query];
        prefill.queryStride = step.strides[s_.query];
        prefill.out = step.buffers[s_.output] + static_cast<size_t>(segment.firstRow) * step.strides[s_.output];
        prefill.outStride = step.strides[s_.output];
        prefill.slot = slot;
        prefill.blockTable = step.blockTables + s * static_cast<size_t>(step.blockTableWidth);
        prefill.rows = segment.rows;
        prefill.position = segment.position;
        prefill.heads = s_.heads;
        prefill.kvHeads = s_.kvHeads;
        prefill.headDim = s_.headDim;
        prefill.window = s_.window;
        prefill.chunk = s_.chunk;
        prefill.temperatureFloor = s_.temperatureFloor;
        prefill.temperatureScale = s_.temperatureScale;
        prefill.scale = scale_;
        prefill.sinks = s_.sinks.empty() ? nullptr : sinks_.as<float>();
        prefill.dtype = dtype_;
        prefill.multiprocessors = multiprocessors_;
        enqueuePrefillAttention(prefill, step.stream);
      } else if (!splitRuns.empty() && splitRuns.back().first + splitRuns.back().second == segment.firstRow) {
        splitRuns.back().second += segment.rows;
      } else {
        splitRuns.emplace_back(segment.firstRow, segment.rows);
      }
    }
    if (splitRuns.empty()) return;
    // The executor's bound on every row's keys (position + 1), rounded up for a captured step.
    const int context = std::max(step.maxContext, 1);
    // Most keys any row sees.
    const int span = s_.chunk > 0 ? std::min(context, s_.chunk) : s_.window > 0 ? std::min(context, s_.window) : context;
    const int groupSize = s_.heads / s_.kvHeads;
    const int headsPerBlock = headsPerBlockFor(groupSize);
    const int groupBlocks = (groupSize + headsPerBlock - 1) / headsPerBlock;
    const SplitPlan plan = planSplits(span);
    const int batchRows = attentionRowsPerLaunch(step.tokens, s_.heads, plan.chunks, s_.headDim, kScratchBudget);
    const size_t partials = static_cast<size_t>(batchRows) * s_.heads * plan.chunks;

    SplitAttention attention;
    attention.query = step.buffers[s_.query];
    attention.queryStride = step.strides[s_.query];
    attention.keys = slot.keys;
    attention.values = slot.values;
    attention.keyRowStride = static_cast<size_t>(slot.keyWidth);
    attention.valueRowStride = static_cast<size_t>(slot.valueWidth);
    attention.blockTables = step.blockTables;
    attention.blockTableWidth = step.blockTableWidth;
    attention.rowPositions = step.rowPositions;
    attention.rowSegments = step.rowSegments;
    attention.firstRow = 0;
    attention.heads = s_.heads;
    attention.kvHeads = s_.kvHeads;
    attention.keyDim = s_.headDim;
    attention.valueDim = s_.headDim;
    attention.groupBlocks = groupBlocks;
    attention.window = s_.window;
    attention.chunk = s_.chunk;
    attention.temperatureFloor = s_.temperatureFloor;
    attention.temperatureScale = s_.temperatureScale;
    attention.scale = scale_;
    attention.chunkKeys = plan.chunkKeys;
    attention.chunks = plan.chunks;
    // Op-local scratch, freed in stream order when this op's kernels are done: the layers of a step reuse it.
    StepArena scratch(step.stream);
    attention.partialMax = scratch.take<float>(partials, "attention partial maxima");
    attention.partialSum = scratch.take<float>(partials, "attention partial sums");
    attention.partialAcc = scratch.take<float>(partials * s_.headDim, "attention partial outputs");

    AttentionCombine combine;
    combine.partialMax = attention.partialMax;
    combine.partialSum = attention.partialSum;
    combine.partialAcc = attention.partialAcc;
    combine.rowPositions = step.rowPositions;
    combine.firstRow = 0;
    combine.heads = s_.heads;
    combine.valueDim = s_.headDim;
    combine.window = s_.window;
    combine.chunk = s_.chunk;
    combine.chunkKeys = plan.chunkKeys;
    combine.chunks = plan.chunks;
    combine.sinks = s_.sinks.empty() ? nullptr : sinks_.as<float>();
    combine.out = step.buffers[s_.output];
    combine.outStride = step.strides[s_.output];

    // Slices of rows reuse the partials in stream order.
    const float* query = attention.query;
    float* out = combine.out;
    for (const auto& [runFirst, runRows] : splitRuns) {
      for (int first = runFirst; first < runFirst + runRows; first += batchRows) {
        const int rows = std::min(batchRows, runFirst + runRows - first);
        attention.firstRow = first;
        attention.query = query + static_cast<size_t>(first) * attention.queryStride;
        combine.firstRow = first;
        combine.out = out + static_cast<size_t>(first) * combine.outStride;
        if (slot.dtype == DType::BF16) {
          launchAttention<__nv_bfloat16>(attention, combine, headsPerBlock, rows, step.stream);
        } else {
          launchAttention<float>(attention, combine, headsPerBlock, rows, step.stream);
        }
        checkCuda(cudaGetLastError(), "launching attention");
      }
    }
  }

  size_t weightBytes() const override { return sinks_.bytes(); }
  const char* name() const override { return "attention"; }

 private:
  AttentionNode s_;
  DType dtype_;  // the model's: 16-bit models take tensor cores for long prompt chunks
  int multiprocessors_;
  float scale_ = 1.0f;
  DeviceBuffer sinks_;  // [heads] f32, when the node has sinks
};

}  // namespace

std::unique_ptr<DeviceOp> makeDeviceOp(const AttentionNode& node, DeviceOpContext& context) {
  return std::make_unique<AttentionOp>(node, context);
}

}  // namespace dynamoe::cuda
