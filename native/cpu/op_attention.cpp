#include <algorithm>
#include <cmath>
#include <cstring>

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
    KvCache& cache = *step.cache;
    const int kvWidth = s_.kvHeads * s_.headDim;
    float* keys = cache.keys(s_.slot);
    float* values = cache.values(s_.slot);
    for (int t = 0; t < step.tokens; ++t) {
      const size_t position = static_cast<size_t>(step.position + t);
      std::memcpy(keys + position * kvWidth, step.buffers[s_.key] + t * step.strides[s_.key], kvWidth * sizeof(float));
      std::memcpy(values + position * kvWidth, step.buffers[s_.value] + t * step.strides[s_.value],
                  kvWidth * sizeof(float));
    }
    const int groupSize = s_.heads / s_.kvHeads;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s_.headDim)));
    const AttendFn attend = activeTileKernels().attend;
    // One item per (query row, key/value head), taking every query head of its group, so each key and value read
    // serves them all; with too few such items to keep the threads busy (decode), one per (query row, head).
    const size_t threads = static_cast<size_t>(cpuThreadPool().threads());
    const bool wholeGroups = static_cast<size_t>(step.tokens) * s_.kvHeads >= 4 * threads;
    const int headsPerItem = wholeGroups ? groupSize : 1;
    const int itemsPerRow = s_.heads / headsPerItem;
    cpuThreadPool().parallelFor(static_cast<size_t>(step.tokens) * itemsPerRow, [&](size_t item) {
      const int t = static_cast<int>(item / itemsPerRow);
      const int h = static_cast<int>(item % itemsPerRow) * headsPerItem;  // the item's first head
      const int kvHead = h / groupSize;
      AttendJob job;
      job.query = step.buffers[s_.query] + t * step.strides[s_.query] + h * s_.headDim;
      job.out = step.buffers[s_.output] + t * step.strides[s_.output] + h * s_.headDim;
      job.queries = headsPerItem;
      job.keys = keys + kvHead * s_.headDim;
      job.values = values + kvHead * s_.headDim;
      job.kvStride = kvWidth;
      job.visible = step.position + t + 1;  // causal: positions 0 .. its own
      job.headDim = s_.headDim;
      job.scale = scale;
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
  for (int g = 0; g < job.queries; ++g) {
    const float* query = job.query + static_cast<size_t>(g) * job.headDim;
    float* out = job.out + static_cast<size_t>(g) * job.headDim;
    float* scores = job.scores + static_cast<size_t>(g) * attendScratchFloats(job.visible);
    float maxScore = -INFINITY;
    for (int p = 0; p < job.visible; ++p) {
      scores[p] = dot(query, job.keys + p * job.kvStride, job.headDim) * job.scale;
      maxScore = std::max(maxScore, scores[p]);
    }
    double sum = 0.0;
    for (int p = 0; p < job.visible; ++p) sum += scores[p] = std::exp(scores[p] - maxScore);
    const float inverse = static_cast<float>(1.0 / sum);
    std::fill(out, out + job.headDim, 0.0f);
    for (int p = 0; p < job.visible; ++p) {
      const float* v = job.values + p * job.kvStride;
      const float w = scores[p] * inverse;
      for (int d = 0; d < job.headDim; ++d) out[d] += w * v[d];
    }
  }
}

std::unique_ptr<GraphOp> makeOp(const AttentionNode& node, OpContext&) { return std::make_unique<AttentionOp>(node); }

}  // namespace dynamoe::cpu
