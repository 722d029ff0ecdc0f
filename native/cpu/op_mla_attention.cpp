// Multi-head latent attention (DeepSeek-V2 MLA) on the compressed cache: queries are absorbed into the latent space
// by W_uk, attended against the cached latent rows by the ordinary attention kernel (one shared "key head" of width
// kvLoraRank + ropeDim, the latent serving as value too), and the attended latents are expanded by W_uv.
#include <algorithm>
#include <cstring>
#include <vector>

#include "graph_ops.h"
#include "grouped_gemm.h"
#include "thread_pool.h"

namespace dynamoe::cpu {

namespace {

// Rows [firstRow, firstRow + rows) of a [*][cols] source, as a source of their own.
MatrixSource rowsOf(const MatrixSource& source, int firstRow, int cols) {
  const size_t rowBytes = source.quant != QuantType::None ? quantRowBytes(source.quant, cols)
                                                          : static_cast<size_t>(cols) * dtypeBytes(source.dtype);
  MatrixSource out = source;
  out.data = static_cast<const char*>(source.data) + static_cast<size_t>(firstRow) * rowBytes;
  return out;
}

size_t padToPanels(int width) { return (static_cast<size_t>(width) + kPanelWidth - 1) / kPanelWidth * kPanelWidth; }

class MlaAttentionOp : public GraphOp {
 public:
  MlaAttentionOp(const MlaAttentionNode& node, DType dtype) : s_(node) {
    s_.keyUp = {};
    s_.valueUp = {};
    // One packed matrix per head: a head's product is a GEMM of its own (groups of one grouped GEMM).
    for (int h = 0; h < s_.heads; ++h) {
      keyUp_.push_back(
          packColumns(rowsOf(node.keyUp, h * s_.kvLoraRank, s_.nopeDim), s_.kvLoraRank, s_.nopeDim, dtype));
      valueUp_.push_back(
          packColumns(rowsOf(node.valueUp, h * s_.valueDim, s_.kvLoraRank), s_.valueDim, s_.kvLoraRank, dtype));
    }
  }

  void run(GraphStep& step) const override {
    const int width = s_.kvLoraRank + s_.ropeDim;  // of a latent row and of an absorbed query
    const int tokens = step.tokens;
    appendLatentRows(step);

    // Absorbed queries [tokens][heads][width]: queryNope . W_uk (the GEMM writes whole panels, so through `absorbed`),
    // then the head's roped part.
    const size_t latentPad = padToPanels(s_.kvLoraRank);
    AlignedBuffer absorbed(static_cast<size_t>(tokens) * s_.heads * latentPad * sizeof(float),
                           AlignedBuffer::Fill::Uninitialized);
    std::vector<GemmGroup> groups(s_.heads);
    for (int h = 0; h < s_.heads; ++h) {
      GemmGroup& g = groups[h];
      g.weights = &keyUp_[h];
      g.rows = tokens;
      g.input = step.buffers[s_.queryNope] + static_cast<size_t>(h) * s_.nopeDim;
      g.inputStride = step.strides[s_.queryNope];
      g.output = absorbed.as<float>() + h * latentPad;
      g.outputStride = s_.heads * latentPad;
    }
    runGroupedGemm(groups, Epilogue::Scaled, step.scratch);
    const size_t rowFloats = static_cast<size_t>(s_.heads) * width;
    AlignedBuffer queries(tokens * rowFloats * sizeof(float), AlignedBuffer::Fill::Uninitialized);
    for (int t = 0; t < tokens; ++t) {
      for (int h = 0; h < s_.heads; ++h) {
        float* query = queries.as<float>() + t * rowFloats + static_cast<size_t>(h) * width;
        std::memcpy(query, absorbed.as<float>() + (static_cast<size_t>(t) * s_.heads + h) * latentPad,
                    s_.kvLoraRank * sizeof(float));
        std::memcpy(query + s_.kvLoraRank,
                    step.buffers[s_.queryRope] + t * step.strides[s_.queryRope] + static_cast<size_t>(h) * s_.ropeDim,
                    s_.ropeDim * sizeof(float));
      }
    }

    // Attended latents [tokens][heads][width]; the last ropeDim floats of each (weights times roped keys) go unused.
    AlignedBuffer latents(tokens * rowFloats * sizeof(float), AlignedBuffer::Fill::Uninitialized);
    attend(step, queries.as<float>(), latents.as<float>(), width);

    // Head outputs: latent . W_uv^T, through padded panels again, then packed into the output rows.
    const size_t valuePad = padToPanels(s_.valueDim);
    AlignedBuffer expanded(static_cast<size_t>(tokens) * s_.heads * valuePad * sizeof(float),
                           AlignedBuffer::Fill::Uninitialized);
    for (int h = 0; h < s_.heads; ++h) {
      GemmGroup& g = groups[h];
      g.weights = &valueUp_[h];
      g.input = latents.as<float>() + static_cast<size_t>(h) * width;
      g.inputStride = rowFloats;
      g.output = expanded.as<float>() + h * valuePad;
      g.outputStride = s_.heads * valuePad;
    }
    runGroupedGemm(groups, Epilogue::Scaled, step.scratch);
    for (int t = 0; t < tokens; ++t) {
      float* out = step.buffers[s_.output] + t * step.strides[s_.output];
      for (int h = 0; h < s_.heads; ++h) {
        std::memcpy(out + static_cast<size_t>(h) * s_.valueDim,
                    expanded.as<float>() + (static_cast<size_t>(t) * s_.heads + h) * valuePad,
                    s_.valueDim * sizeof(float));
      }
    }
  }

  size_t weightBytes() const override {
    size_t bytes = 0;
    for (const PackedMatrix& m : keyUp_) bytes += m.bytes();
    for (const PackedMatrix& m : valueUp_) bytes += m.bytes();
    return bytes;
  }

 private:
  // Each row's [latent | keyRope] at its position of the cache slot: all the layer keeps of it.
  void appendLatentRows(const GraphStep& step) const {
    for (int t = 0; t < step.tokens; ++t) {
      const KvCache& cache = *step.segments[step.rowSegments[t]].cache;
      float* row = cache.keyAt(s_.slot, step.rowPositions[t]);
      std::memcpy(row, step.buffers[s_.latent] + t * step.strides[s_.latent], s_.kvLoraRank * sizeof(float));
      std::memcpy(row + s_.kvLoraRank, step.buffers[s_.keyRope] + t * step.strides[s_.keyRope],
                  s_.ropeDim * sizeof(float));
    }
  }

  // Causal attention of every head's absorbed query over its sequence's latent rows (multi-query: one shared row).
  void attend(const GraphStep& step, const float* queries, float* out, int width) const {
    std::vector<std::vector<const float*>> blocks(step.segments.size());
    for (size_t s = 0; s < step.segments.size(); ++s) {
      const KvCache& cache = *step.segments[s].cache;
      for (int32_t block : cache.blocks()) blocks[s].push_back(cache.pool().keys(s_.slot, block));
    }
    const AttendFn kernel = activeTileKernels().attend;
    // As the attention op: all heads of a row in one item (each latent row read once for them all) when there are
    // enough rows to keep the threads busy, else one item per (row, head); a row's bits are the same either way.
    const size_t threads = static_cast<size_t>(cpuThreadPool().threads());
    const int headsPerItem = static_cast<size_t>(step.tokens) >= 4 * threads ? s_.heads : 1;
    const int itemsPerRow = s_.heads / headsPerItem;
    const size_t rowFloats = static_cast<size_t>(s_.heads) * width;
    cpuThreadPool().parallelFor(static_cast<size_t>(step.tokens) * itemsPerRow, [&](size_t item) {
      const int t = static_cast<int>(item / itemsPerRow);
      const int h = static_cast<int>(item % itemsPerRow) * headsPerItem;
      const int segment = step.rowSegments[t];
      AttendJob job;
      job.query = queries + t * rowFloats + static_cast<size_t>(h) * width;
      job.out = out + t * rowFloats + static_cast<size_t>(h) * width;
      job.queries = headsPerItem;
      job.keyBlocks = blocks[segment].data();
      job.valueBlocks = blocks[segment].data();  // the latent is its own value
      job.blockTokens = KvBlockPool::kBlockTokens;
      job.headOffset = 0;
      job.kvStride = width;
      job.visible = step.rowPositions[t] + 1;  // causal: positions 0 .. its own
      job.headDim = width;
      job.scale = s_.scale;
      thread_local std::vector<float> scores;
      scores.resize(headsPerItem * attendScratchFloats(job.visible));
      job.scores = scores.data();
      kernel(job);
    });
  }

  MlaAttentionNode s_;  // shapes only: the sources are read once, by the constructor
  std::vector<PackedMatrix> keyUp_;    // per head: [kvLoraRank][nopeDim] (W_uk^T)
  std::vector<PackedMatrix> valueUp_;  // per head: [valueDim][kvLoraRank] (W_uv)
};

}  // namespace

std::unique_ptr<GraphOp> makeOp(const MlaAttentionNode& node, OpContext& context) {
  return std::make_unique<MlaAttentionOp>(node, context.dtype);
}

}  // namespace dynamoe::cpu
