#include "device_model.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <map>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "device_graph_ops.h"
#include "device_ops.h"
#include "moe_kernels.h"
#include "nvtx_range.h"

namespace dynamoe::cuda {

// Page-locked host memory for the steps' uploads and copies back (pageable memory would make each copy wait for
// the GPU), kept for the next steps: pinning costs far more than a step's copies.
class PinnedPool {
 public:
  PinnedPool() = default;
  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;
  ~PinnedPool() { release(); }

  // A block of at least `bytes`, given back by PinnedBlock.
  std::pair<void*, size_t> take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = free_.lower_bound(bytes);
      if (found != free_.end()) {
        const std::pair<void*, size_t> block{found->second, found->first};
        free_.erase(found);
        return block;
      }
    }
    size_t size = kMinimumBytes;
    while (size < bytes) size *= 2;  // powers of two: blocks are reused across steps of different sizes
    void* data = nullptr;
    checkCuda(cudaMallocHost(&data, size), "allocating page-locked host memory for a step's copies");
    return {data, size};
  }
  void give(void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace(bytes, data);
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [bytes, data] : free_) cudaFreeHost(data);
    free_.clear();
  }

 private:
  static constexpr size_t kMinimumBytes = 64 << 10;
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // by size
};

namespace {

class PinnedBlock {
 public:
  PinnedBlock(PinnedPool& pool, size_t bytes) : pool_(pool) {
    const auto block = pool.take(bytes);
    data_ = static_cast<char*>(block.first);
    bytes_ = block.second;
  }
  PinnedBlock(const PinnedBlock&) = delete;
  PinnedBlock& operator=(const PinnedBlock&) = delete;
  ~PinnedBlock() { pool_.give(data_, bytes_); }
  char* data() const { return data_; }

 private:
  PinnedPool& pool_;
  char* data_ = nullptr;
  size_t bytes_ = 0;
};

// Waits for the stream when a step fails part-way, so no copy still in flight reads or writes a pinned block or
// caller array after it is given back.
class DrainOnFailure {
 public:
  explicit DrainOnFailure(cudaStream_t stream) : stream_(stream), exceptions_(std::uncaught_exceptions()) {}
  DrainOnFailure(const DrainOnFailure&) = delete;
  DrainOnFailure& operator=(const DrainOnFailure&) = delete;
  ~DrainOnFailure() {
    if (std::uncaught_exceptions() > exceptions_) cudaStreamSynchronize(stream_);
  }

 private:
  cudaStream_t stream_;
  int exceptions_;
};

constexpr size_t kAlignment = 256;
size_t aligned(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// The host side of a step's inputs, packed into one upload: int arrays, then the routing policies.
struct StepTables {
  std::vector<int32_t> tokenIds, rowPositions, rowSegments, segmentFirstRow, segmentPositions, blockTables;
  std::vector<int32_t> logitRowIndex, logitTargets;
  std::vector<RoutingPolicy> moePolicies;  // [moe slots][segments]
};

}  // namespace

CudaModel::CudaModel(GraphLayout layout, DType dtype, int kvPoolTokens)
    : layout_(std::move(layout)), dtype_(dtype), pinned_(std::make_unique<PinnedPool>()) {
  requireDevice();
  multiprocessors_ = backendStatus().multiprocessors;
  const std::vector<int>& values = layout_.kvValueWidths.empty() ? layout_.kvWidths : layout_.kvValueWidths;
  kvPool_ = std::make_shared<DeviceKvPool>(layout_.kvWidths, values,
                                           (kvPoolTokens + kDeviceBlockTokens - 1) / kDeviceBlockTokens);
}

CudaModel::~CudaModel() = default;

void CudaModel::addNode(const GraphNode& node) {
  DeviceOpContext context{layout_, dtype_, multiprocessors_, embeddingTable_};
  // Each op kind's factory is found by overload: a new op needs no case here.
  std::unique_ptr<DeviceOp> op = std::visit([&](const auto& n) { return makeDeviceOp(n, context); }, node);
  const OpKind kind = opKind(node);
  std::string range = kind == OpKind::Embedding ? "embedding"
                      : kind == OpKind::Logits  ? "lm_head"
                                                : "layer " + std::to_string(layer_) + "/" + op->name();
  // A layer ends with the residual add after its feed-forward block (dense MLP or MoE).
  if (kind == OpKind::Mlp || kind == OpKind::Moe) afterFeedForward_ = true;
  if (kind == OpKind::Add && afterFeedForward_) {
    afterFeedForward_ = false;
    ++layer_;
  }
  std::lock_guard<std::mutex> lock(opsMutex_);
  ops_.push_back(std::move(op));
  opRanges_.push_back(std::move(range));
}

size_t CudaModel::weightBytes() const {
  std::lock_guard<std::mutex> lock(opsMutex_);
  size_t bytes = 0;
  for (const auto& op : ops_) bytes += op->weightBytes();
  return bytes;
}

std::shared_ptr<Sequence> CudaModel::createSequence(int capacity) {
  return std::make_shared<DeviceSequence>(kvPool_, capacity);
}

void CudaModel::close() { pinned_->release(); }

void CudaModel::forward(const StepRequest& request) const {
  if (request.count < 1) throw Error(code::kShape, "a step needs at least one segment");
  const int vocab = layout_.vocab;
  DeviceStep step;
  std::vector<DeviceSequence*> sequences;
  for (int s = 0; s < request.count; ++s) {
    const StepSegment& segment = request.segments[s];
    auto* sequence = dynamic_cast<DeviceSequence*>(segment.sequence);
    if (sequence == nullptr) throw Error(code::kInternal, "a CUDA model was given another backend's sequence");
    if (&sequence->pool() != kvPool_.get()) throw Error(code::kValue, "a step was given another model's sequence");
    if (std::find(sequences.begin(), sequences.end(), sequence) != sequences.end()) {
      throw Error(code::kValue, "a step holds the same sequence twice");
    }
    if (segment.tokens < 1) throw Error(code::kShape, "every segment of a step needs at least one token");
    for (int t = 0; t < segment.tokens; ++t) {
      const int32_t id = segment.tokenIds[t];
      if (id < 0 || id >= vocab) {
        throw Error(code::kValue, "token id " + std::to_string(id) + " at position " + std::to_string(t) +
                                      " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
      }
    }
    sequences.push_back(sequence);
    step.segments.push_back({&segment, step.tokens, segment.tokens, sequence->length()});
    step.tokens += segment.tokens;
  }
  for (size_t s = 0; s < sequences.size(); ++s) sequences[s]->reserve(step.segments[s].rows);

  // The step's tables on the host.
  const int segments = request.count;
  StepTables tables;
  int tableWidth = 1;
  for (const DeviceSequence* sequence : sequences) {
    tableWidth = std::max(tableWidth, static_cast<int>(sequence->blocks().size()));
  }
  tables.blockTables.assign(static_cast<size_t>(segments) * tableWidth, 0);
  for (int s = 0; s < segments; ++s) {
    const DeviceSegmentRows& rows = step.segments[s];
    const StepSegment& segment = *rows.request;
    tables.segmentFirstRow.push_back(rows.firstRow);
    tables.segmentPositions.push_back(rows.position);
    const std::vector<int32_t>& blocks = sequences[s]->blocks();
    std::copy(blocks.begin(), blocks.end(), tables.blockTables.begin() + static_cast<size_t>(s) * tableWidth);
    for (int r = 0; r < rows.rows; ++r) {
      tables.tokenIds.push_back(segment.tokenIds[r]);
      tables.rowPositions.push_back(rows.position + r);
      tables.rowSegments.push_back(s);
    }
    step.maxRowsPerSegment = std::max(step.maxRowsPerSegment, rows.rows);
    step.maxContext = std::max(step.maxContext, rows.position + rows.rows);
    // The rows the LM head computes: every row scored, the last one when generating, else all.
    const bool scored = segment.targets != nullptr;
    const int first = segment.lastRowLogits && !scored ? rows.rows - 1 : 0;
    for (int r = first; r < rows.rows; ++r) {
      const int32_t target = scored ? segment.targets[r] : -1;
      step.logitRows.push_back({rows.firstRow + r, target, scored});
      tables.logitRowIndex.push_back(rows.firstRow + r);
      tables.logitTargets.push_back(target);
    }
  }
  tables.segmentFirstRow.push_back(step.tokens);
  const int moeSlots = static_cast<int>(layout_.moeExperts.size());
  for (int slot = 0; slot < moeSlots; ++slot) {
    for (int s = 0; s < segments; ++s) tables.moePolicies.push_back(step.segments[s].request->policies[slot]);
  }

  NvtxRange stepRange("step", step.tokens);
  OwnedStream stream;
  StepArena arena(stream.get());
  step.stream = stream.get();
  step.arena = &arena;
  step.kvPool = kvPool_.get();
  step.blockTableWidth = tableWidth;

  // One upload of every table (one pinned block, one copy).
  const std::vector<int32_t>* intTables[] = {&tables.tokenIds,        &tables.rowPositions,     &tables.rowSegments,
                                             &tables.segmentFirstRow, &tables.segmentPositions, &tables.blockTables,
                                             &tables.logitRowIndex,   &tables.logitTargets};
  size_t uploadBytes = 0;
  std::vector<size_t> offsets;
  for (const auto* table : intTables) {
    offsets.push_back(uploadBytes);
    uploadBytes += aligned(table->size() * sizeof(int32_t));
  }
  const size_t policiesAt = uploadBytes;
  uploadBytes += aligned(tables.moePolicies.size() * sizeof(RoutingPolicy));
  PinnedBlock upload(*pinned_, uploadBytes);
  DrainOnFailure drain(step.stream);
  for (size_t i = 0; i < offsets.size(); ++i) {
    std::memcpy(upload.data() + offsets[i], intTables[i]->data(), intTables[i]->size() * sizeof(int32_t));
  }
  std::memcpy(upload.data() + policiesAt, tables.moePolicies.data(), tables.moePolicies.size() * sizeof(RoutingPolicy));
  char* device = static_cast<char*>(arena.take(uploadBytes, "the step's tables"));
  checkCuda(cudaMemcpyAsync(device, upload.data(), uploadBytes, cudaMemcpyHostToDevice, step.stream),
            "copying the step's tables to the GPU");
  const auto deviceInts = [&](int i) { return reinterpret_cast<const int32_t*>(device + offsets[i]); };
  step.tokenIds = deviceInts(0);
  step.rowPositions = deviceInts(1);
  step.rowSegments = deviceInts(2);
  step.segmentFirstRow = deviceInts(3);
  step.segmentPositions = deviceInts(4);
  step.blockTables = deviceInts(5);
  step.logitRowIndex = deviceInts(6);
  step.logitTargets = deviceInts(7);
  step.moePolicies = reinterpret_cast<const RoutingPolicy*>(device + policiesAt);

  // Activation buffers: rows padded to whole 128-column tiles, zeroed so every op reads zero tails.
  size_t activationFloats = 0;
  for (int width : layout_.bufferWidths) {
    step.strides.push_back(static_cast<size_t>(paddedDimension(width)));
    activationFloats += step.strides.back() * step.tokens;
  }
  float* next = arena.take<float>(activationFloats, "the step's activations");
  checkCuda(cudaMemsetAsync(next, 0, activationFloats * sizeof(float), step.stream), "clearing the activations");
  for (size_t stride : step.strides) {
    step.buffers.push_back(next);
    next += stride * step.tokens;
  }
  const size_t logitRows = step.logitRows.size();
  step.logitStride = static_cast<size_t>(paddedDimension(vocab));
  step.logits = arena.take<float>(logitRows * step.logitStride, "the step's logits");
  step.logProbs = arena.take<double>(logitRows, "the step's log-probabilities");

  for (size_t i = 0; i < ops_.size(); ++i) {
    NvtxRange range(opRanges_[i].c_str(), step.tokens);
    ops_[i]->enqueue(step);
  }

  // Copies back: statistics and checks into pinned memory; logits and log-probabilities into the caller's arrays.
  size_t readbackBytes = 0;
  for (const DeviceStep::Readback& readback : step.readbacks) readbackBytes += aligned(readback.bytes);
  PinnedBlock back(*pinned_, std::max<size_t>(readbackBytes, 1));
  DrainOnFailure drainBack(step.stream);
  size_t at = 0;
  for (const DeviceStep::Readback& readback : step.readbacks) {
    checkCuda(cudaMemcpyAsync(back.data() + at, readback.device, readback.bytes, cudaMemcpyDeviceToHost, step.stream),
              "copying the step's statistics back");
    at += aligned(readback.bytes);
  }
  size_t firstLogitRow = 0;
  for (const DeviceSegmentRows& rows : step.segments) {
    const StepSegment& segment = *rows.request;
    const bool scored = segment.targets != nullptr;
    const size_t count = scored || !segment.lastRowLogits ? rows.rows : 1;
    if (scored) {
      checkCuda(cudaMemcpyAsync(segment.targetLogProbs, step.logProbs + firstLogitRow, count * sizeof(double),
                                cudaMemcpyDeviceToHost, step.stream),
                "copying log-probabilities back");
    } else {
      checkCuda(cudaMemcpy2DAsync(segment.logits, static_cast<size_t>(vocab) * sizeof(float),
                                  step.logits + firstLogitRow * step.logitStride, step.logitStride * sizeof(float),
                                  static_cast<size_t>(vocab) * sizeof(float), count, cudaMemcpyDeviceToHost,
                                  step.stream),
                "copying logits back");
    }
    firstLogitRow += count;
  }
  stream.synchronize("a model step on the GPU");
  at = 0;
  for (const DeviceStep::Readback& readback : step.readbacks) {
    readback.use(back.data() + at);
    at += aligned(readback.bytes);
  }
  for (size_t s = 0; s < sequences.size(); ++s) sequences[s]->commit(step.segments[s].rows);
}

}  // namespace dynamoe::cuda
