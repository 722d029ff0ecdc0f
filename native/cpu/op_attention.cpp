#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "thread_pool.h"
#include "graph_ops.h"
#include "tile_kernels.h"

namespace dynamoe::cpu {

namespace {

// q . k over n elements in 8 interleaved partial sums: independent chains the compiler vectorizes with the baseline
// ISA (one running sum is a serial chain of n dependent adds, which made prefill attention cost as much as the
// attention projections).
inline float dot(const float* q, const float* k, int n) {
  float partial[8] = {};
  int d = 0;
  for (; d + 8 <= n; d += 8) {
    for (int j = 0; j < 8; ++j) partial[j] += q[d + j] * k[d + j];
  }
  for (; d < n; ++d) partial[d % 8] += q[d] * k[d];
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) + ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

class AttentionOp : public GraphOp {
 public:
  explicit AttentionOp(const AttentionNode& shape) : s_(shape) {}

  void run(GraphStep& step) const override {
    const int kvWidth = s_.kvHeads * s_.headDim;
    for (int t = 0; t < step.tokens; ++t) {
      const KvCache& cache = *step.segments[step.rowSegments[t]].cache;
      const int position = step.rowPositions[t];
      std::memcpy(cache.keyAt(s_.slot, position), step.buffers[s_.key] + t * step.strides[s_.key],
                  kvWidth * sizeof(float));
      std::memcpy(cache.valueAt(s_.slot, position), step.buffers[s_.value] + t * step.strides[s_.value],
                  kvWidth * sizeof(float));
    }
    // Each segment's blocks of this layer, as the kernels read them.
    std::vector<std::vector<const float*>> keyBlocks(step.segments.size());
    std::vector<std::vector<const float*>> valueBlocks(step.segments.size());
    for (size_t s = 0; s < step.segments.size(); ++s) {
      const KvCache& cache = *step.segments[s].cache;
      for (int32_t block : cache.blocks()) {
        keyBlocks[s].push_back(cache.pool().keys(s_.slot, block));
        valueBlocks[s].push_back(cache.pool().values(s_.slot, block));
      }
    }
    const int groupSize = s_.heads / s_.kvHeads;
    const float scale =
        s_.scale > 0.0f ? s_.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s_.headDim)));
    const AttendFn attend = activeTileKernels().attend;
    // One item per (query row, key/value head), taking every query head of its group, so each key and value read
    // serves them all; with too few such items to keep the threads busy (decode), one per (query row, head). Either
    // way a row's results have the same bits (the kernels add in one order).
    const size_t threads = static_cast<size_t>(cpuThreadPool().threads());
    const bool wholeGroups = static_cast<size_t>(step.tokens) * s_.kvHeads >= 4 * threads;
    const int headsPerItem = wholeGroups ? groupSize : 1;
    const int itemsPerRow = s_.heads / headsPerItem;
    cpuThreadPool().parallelFor(static_cast<size_t>(step.tokens) * itemsPerRow, [&](size_t item) {
      const int t = static_cast<int>(item / itemsPerRow);
      const int h = static_cast<int>(item % itemsPerRow) * headsPerItem;  // the item's first head
      const int kvHead = h / groupSize;
      const int segment = step.rowSegments[t];
      AttendJob job;
      job.query = step.buffers[s_.query] + t * step.strides[s_.query] + h * s_.headDim;
      job.out = step.buffers[s_.output] + t * step.strides[s_.output] + h * s_.headDim;
      job.queries = headsPerItem;
      job.keyBlocks = keyBlocks[segment].data();
      job.valueBlocks = valueBlocks[segment].data();
      job.blockTokens = KvBlockPool::kBlockTokens;
      job.headOffset = static_cast<size_t>(kvHead) * s_.headDim;
      job.kvStride = kvWidth;
      job.visible = step.rowPositions[t] + 1;  // causal: positions 0 .. its own
      // A sliding window keeps the last `window` of them, a chunk those of its own chunk.
      job.first = firstVisiblePosition(step.rowPositions[t], s_.window, s_.chunk);
      job.sinks = s_.sinks.empty() ? nullptr : s_.sinks.data() + h;
      job.headDim = s_.headDim;
      job.scale = scale * attentionTemperature(step.rowPositions[t], s_.temperatureFloor, s_.temperatureScale);
      thread_local std::vector<float> scores;
      scores.resize(headsPerItem * attendScratchFloats(job.visible));
      job.scores = scores.data();
      attend(job);
    });
  }

 private:
  AttentionNode s_;
};

}  // namespace

void attendScalar(const AttendJob& job) {
  const auto key = [&](int p) { return attendKeys(job, p / job.blockTokens) + (p % job.blockTokens) * job.kvStride; };
  const auto value = [&](int p) {
    return attendValues(job, p / job.blockTokens) + (p % job.blockTokens) * job.kvStride;
  };
  for (int g = 0; g < job.queries; ++g) {
    const float* query = job.query + static_cast<size_t>(g) * job.headDim;
    float* out = job.out + static_cast<size_t>(g) * job.headDim;
    float* scores = job.scores + static_cast<size_t>(g) * attendScratchFloats(job.visible);
    float maxScore = job.sinks ? job.sinks[g] : -INFINITY;
    for (int p = job.first; p < job.visible; ++p) {
      scores[p] = dot(query, key(p), job.headDim) * job.scale;
      maxScore = std::max(maxScore, scores[p]);
    }
    double sum = job.sinks ? std::exp(static_cast<double>(job.sinks[g] - maxScore)) : 0.0;
    for (int p = job.first; p < job.visible; ++p) sum += scores[p] = std::exp(scores[p] - maxScore);
    const float inverse = static_cast<float>(1.0 / sum);
    std::fill(out, out + job.headDim, 0.0f);
    for (int p = job.first; p < job.visible; ++p) {
      const float* v = value(p);
      const float w = scores[p] * inverse;
      for (int d = 0; d < job.headDim; ++d) out[d] += w * v[d];
    }
  }
}

std::unique_ptr<GraphOp> makeOp(const AttentionNode& node, OpContext&) { return std::make_unique<AttentionOp>(node); }

}  // namespace dynamoe::cpu
