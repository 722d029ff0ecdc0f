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
#include "step_graphs.h"

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
  std::vector<int32_t> tokenIds, rowPositions, rowSegments, blockTables;
  std::vector<int32_t> logitRowIndex, logitTargets;
  std::vector<RoutingPolicy> moePolicies;  // [moe slots][segments]
  std::vector<TokenChoice> logitChoices;   // [logit rows]
};

}  // namespace

CudaModel::CudaModel(GraphLayout layout, DType dtype, int kvPoolTokens)
    : layout_(std::move(layout)), dtype_(dtype), pinned_(std::make_unique<PinnedPool>()),
      graphs_(std::make_unique<StepGraphCache>()) {
  requireDevice();
  multiprocessors_ = backendStatus().multiprocessors;
  const std::vector<int>& values = layout_.kvValueWidths.empty() ? layout_.kvWidths : layout_.kvValueWidths;
  kvPool_ = std::make_shared<DeviceKvPool>(layout_.kvWidths, values,
                                           (kvPoolTokens + kDeviceBlockTokens - 1) / kDeviceBlockTokens,
                                           kvDtypeFor(dtype_));
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

void CudaModel::close() {
  graphs_->clear();
  pinned_->release();
}

namespace {

// Where a step's tables and buffers sit in its one block of device memory.
struct StepMemory {
  std::vector<size_t> tableOffsets;  // of intTables' arrays
  size_t policiesAt = 0;
  size_t choicesAt = 0;
  size_t tablesBytes = 0;  // the uploaded part
  size_t activationsAt = 0;
  size_t activationFloats = 0;
  size_t logitsAt = 0;
  size_t logProbsAt = 0;
  size_t chosenAt = 0;
  size_t bytes = 0;
};

// The context a captured step is sized for: its rows' longest context rounded up to a power of two (at least 256),
// so a decoding sequence changes shape a few times over its whole length, not at every token.
int contextBucket(int context) {
  int bucket = 256;
  while (bucket < context) bucket *= 2;
  return bucket;
}

}  // namespace

void CudaModel::forward(const StepRequest& request) const {
  if (request.count < 1) throw Error(code::kShape, "a step needs at least one segment");
  const int vocab = layout_.vocab;
  DeviceStep step;
  std::vector<DeviceSequence*> sequences;
  bool decodeOnly = true;
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
    decodeOnly = decodeOnly && segment.tokens == 1 && segment.targets == nullptr;
    sequences.push_back(sequence);
    step.segments.push_back({&segment, step.tokens, segment.tokens, sequence->length()});
    step.tokens += segment.tokens;
  }
  for (size_t s = 0; s < sequences.size(); ++s) sequences[s]->reserve(step.segments[s].rows);
  const int segments = request.count;
  const int moeSlots = static_cast<int>(layout_.moeExperts.size());

  // Decode steps are replayed from CUDA graphs: their shape fixes every launch, their contents live on the device.
  int tableWidth = 1;
  for (const DeviceSequence* sequence : sequences) {
    tableWidth = std::max(tableWidth, static_cast<int>(sequence->blocks().size()));
  }
  for (const DeviceSegmentRows& rows : step.segments) {
    step.maxContext = std::max(step.maxContext, rows.position + rows.rows);
  }
  const bool graphable = decodeOnly && graphs_->enabled();
  std::string shape;
  if (graphable) {
    step.maxContext = contextBucket(step.maxContext);
    tableWidth = std::max(tableWidth, step.maxContext / kDeviceBlockTokens);
    shape = "s" + std::to_string(segments) + " c" + std::to_string(step.maxContext) + " k";
    for (int slot = 0; slot < moeSlots; ++slot) {
      int kMax = 1;
      for (const DeviceSegmentRows& rows : step.segments) {
        kMax = std::max(kMax, rows.request->policies[slot].kMax(layout_.moeExperts[slot]));
      }
      shape += std::to_string(kMax) + ",";
    }
    shape += " f";
    for (const DeviceSegmentRows& rows : step.segments) shape += rows.request->moeStats != nullptr ? '1' : '0';
  }

  // The step's tables on the host.
  StepTables tables;
  tables.blockTables.assign(static_cast<size_t>(segments) * tableWidth, 0);
  for (int s = 0; s < segments; ++s) {
    const DeviceSegmentRows& rows = step.segments[s];
    const StepSegment& segment = *rows.request;
    const std::vector<int32_t>& blocks = sequences[s]->blocks();
    std::copy(blocks.begin(), blocks.end(), tables.blockTables.begin() + static_cast<size_t>(s) * tableWidth);
    for (int r = 0; r < rows.rows; ++r) {
      tables.tokenIds.push_back(segment.tokenIds[r]);
      tables.rowPositions.push_back(rows.position + r);
      tables.rowSegments.push_back(s);
    }
    // The rows the LM head computes: every row scored, the last one when generating, else all.
    const bool scored = segment.targets != nullptr;
    const int first = segment.lastRowLogits && !scored ? rows.rows - 1 : 0;
    for (int r = first; r < rows.rows; ++r) {
      const int32_t target = scored ? segment.targets[r] : -1;
      step.logitRows.push_back({rows.firstRow + r, target, scored});
      tables.logitRowIndex.push_back(rows.firstRow + r);
      tables.logitTargets.push_back(target);
      TokenChoice choice;
      if (!scored && segment.choice.limit > 0) {
        choice = segment.choice;
        choice.limit = std::min(choice.limit, vocab);
        step.rankedChoices = step.rankedChoices || (choice.temperature > 0.0 && choiceRanked(choice));
      }
      tables.logitChoices.push_back(choice);
    }
  }
  for (int slot = 0; slot < moeSlots; ++slot) {
    for (int s = 0; s < segments; ++s) tables.moePolicies.push_back(step.segments[s].request->policies[slot]);
  }
  shape += " l" + std::to_string(step.logitRows.size()) + (step.rankedChoices ? " r" : "");

  // One block of device memory: the uploaded tables, then the activations, logits and log-probabilities.
  const std::vector<int32_t>* intTables[] = {&tables.tokenIds,      &tables.rowPositions,  &tables.rowSegments,
                                             &tables.blockTables,   &tables.logitRowIndex, &tables.logitTargets};
  StepMemory memory;
  for (const auto* table : intTables) {
    memory.tableOffsets.push_back(memory.bytes);
    memory.bytes += aligned(table->size() * sizeof(int32_t));
  }
  memory.policiesAt = memory.bytes;
  memory.bytes += aligned(tables.moePolicies.size() * sizeof(RoutingPolicy));
  memory.choicesAt = memory.bytes;
  memory.bytes += aligned(tables.logitChoices.size() * sizeof(TokenChoice));
  memory.tablesBytes = memory.bytes;
  for (int width : layout_.bufferWidths) {
    // Rows padded to whole 128-column tiles, zeroed at the step's start so every op reads zero tails.
    step.strides.push_back(static_cast<size_t>(paddedDimension(width)));
    memory.activationFloats += step.strides.back() * step.tokens;
  }
  memory.activationsAt = memory.bytes;
  memory.bytes += aligned(memory.activationFloats * sizeof(float));
  const size_t logitRows = step.logitRows.size();
  step.logitStride = static_cast<size_t>(paddedDimension(vocab));
  memory.logitsAt = memory.bytes;
  memory.bytes += aligned(logitRows * step.logitStride * sizeof(float));
  memory.logProbsAt = memory.bytes;
  memory.bytes += aligned(logitRows * sizeof(double));
  memory.chosenAt = memory.bytes;
  memory.bytes += aligned(logitRows * sizeof(int32_t));

  PinnedBlock upload(*pinned_, memory.tablesBytes);
  for (size_t i = 0; i < memory.tableOffsets.size(); ++i) {
    std::memcpy(upload.data() + memory.tableOffsets[i], intTables[i]->data(), intTables[i]->size() * sizeof(int32_t));
  }
  std::memcpy(upload.data() + memory.policiesAt, tables.moePolicies.data(),
              tables.moePolicies.size() * sizeof(RoutingPolicy));
  std::memcpy(upload.data() + memory.choicesAt, tables.logitChoices.data(),
              tables.logitChoices.size() * sizeof(TokenChoice));

  NvtxRange stepRange("step", step.tokens);
  OwnedStream stream;
  DrainOnFailure drain(stream.get());
  step.stream = stream.get();
  step.kvPool = kvPool_.get();
  step.blockTableWidth = tableWidth;
  const auto bind = [&](char* base) {
    const auto deviceInts = [&](int i) { return reinterpret_cast<const int32_t*>(base + memory.tableOffsets[i]); };
    step.tokenIds = deviceInts(0);
    step.rowPositions = deviceInts(1);
    step.rowSegments = deviceInts(2);
    step.blockTables = deviceInts(3);
    step.logitRowIndex = deviceInts(4);
    step.logitTargets = deviceInts(5);
    step.moePolicies = reinterpret_cast<const RoutingPolicy*>(base + memory.policiesAt);
    step.logitChoices = reinterpret_cast<const TokenChoice*>(base + memory.choicesAt);
    step.buffers.clear();
    float* next = reinterpret_cast<float*>(base + memory.activationsAt);
    for (size_t stride : step.strides) {
      step.buffers.push_back(next);
      next += stride * step.tokens;
    }
    step.logits = reinterpret_cast<float*>(base + memory.logitsAt);
    step.logProbs = reinterpret_cast<double*>(base + memory.logProbsAt);
    step.chosenTokens = reinterpret_cast<int32_t*>(base + memory.chosenAt);
  };
  const auto enqueueOps = [&] {
    checkCuda(cudaMemsetAsync(step.buffers[0], 0, memory.activationFloats * sizeof(float), step.stream),
              "clearing the activations");
    for (size_t i = 0; i < ops_.size(); ++i) {
      NvtxRange range(opRanges_[i].c_str(), step.tokens);
      ops_[i]->enqueue(step);
    }
  };

  // A captured graph of this shape when one is free or can be made now; else the ops, launched one by one.
  std::unique_ptr<StepGraph> graph = graphable ? graphs_->take(shape) : nullptr;
  if (graphable && graph == nullptr) {
    const StepGraphCache::ShapeRecord record = graphs_->record(shape);
    if (record.seen && !record.uncapturable && graphs_->roomForAnother()) {
      graph = capture(step, shape, memory.bytes, record.scratchBytes, bind, enqueueOps);
      if (graph == nullptr) {
        graphs_->forgetInstance();
        graphs_->noteUncapturable(shape);
      }
    }
  }
  // A graph that fails its step is dropped, not given back: its state is unknown.
  struct GraphReturn {
    StepGraphCache& cache;
    std::unique_ptr<StepGraph>& graph;
    cudaStream_t stream;
    bool succeeded = false;
    ~GraphReturn() {
      if (graph == nullptr) return;
      if (succeeded) {
        cache.give(std::move(graph));
        return;
      }
      cudaStreamSynchronize(stream);  // its launch may still run: its memory and graph go only after it
      graph.reset();
      cache.forgetInstance();
    }
  } graphReturn{*graphs_, graph, step.stream};
  std::unique_ptr<StreamBuffer> eagerMemory;
  std::unique_ptr<StepArena> arena;
  if (graph != nullptr) {
    bind(graph->memory.as<char>());
    checkCuda(cudaMemcpyAsync(graph->memory.as<char>(), upload.data(), memory.tablesBytes, cudaMemcpyHostToDevice,
                              step.stream),
              "copying the step's tables to the GPU");
    checkCuda(cudaGraphLaunch(graph->exec, step.stream), "launching a captured step");
    step.readbacks = graph->readbacks;
  } else {
    eagerMemory = std::make_unique<StreamBuffer>(memory.bytes, step.stream, "the step's tables and activations");
    bind(eagerMemory->as<char>());
    checkCuda(cudaMemcpyAsync(eagerMemory->as<char>(), upload.data(), memory.tablesBytes, cudaMemcpyHostToDevice,
                              step.stream),
              "copying the step's tables to the GPU");
    arena = std::make_unique<StepArena>(step.stream);
    step.arena = arena.get();
    enqueueOps();
    if (graphable) graphs_->noteRun(shape, arena->used());
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
    } else if (segment.choice.limit > 0) {
      checkCuda(cudaMemcpyAsync(segment.chosenToken, step.chosenTokens + firstLogitRow, sizeof(int32_t),
                                cudaMemcpyDeviceToHost, step.stream),
                "copying the chosen id back");
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
    readback.use(back.data() + at, step);
    at += aligned(readback.bytes);
  }
  graphReturn.succeeded = true;
  for (size_t s = 0; s < sequences.size(); ++s) sequences[s]->commit(step.segments[s].rows);
}

std::unique_ptr<StepGraph> CudaModel::capture(DeviceStep& step, const std::string& shape, size_t memoryBytes,
                                              size_t scratchBytes, const std::function<void(char*)>& bind,
                                              const std::function<void()>& enqueueOps) const {
  auto graph = std::make_unique<StepGraph>();
  graph->shape = shape;
  graph->memory = DeviceBuffer(memoryBytes, "a captured step's memory");
  graph->scratch = DeviceBuffer(std::max<size_t>(scratchBytes, 1), "a captured step's scratch");
  bind(graph->memory.as<char>());
  StepArena arena(graph->scratch.as<char>(), std::max<size_t>(scratchBytes, 1));
  step.arena = &arena;
  step.capturing = true;
  // Thread-local: another model's step on another thread neither breaks this capture nor joins it.
  checkCuda(cudaStreamBeginCapture(step.stream, cudaStreamCaptureModeThreadLocal), "starting a step capture");
  bool enqueued = true;
  try {
    enqueueOps();
  } catch (const std::exception&) {
    enqueued = false;  // the uncaptured run below meets the same error, if it is one
  }
  cudaGraph_t captured = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(step.stream, &captured);
  cudaGetLastError();  // a failed capture leaves an error this thread must not report later
  step.capturing = false;
  step.arena = nullptr;
  if (!enqueued || ended != cudaSuccess || captured == nullptr) {
    if (captured != nullptr) cudaGraphDestroy(captured);
    step.readbacks.clear();
    return nullptr;
  }
  const cudaError_t made = cudaGraphInstantiate(&graph->exec, captured, 0);
  cudaGraphDestroy(captured);
  if (made != cudaSuccess) {
    cudaGetLastError();
    graph->exec = nullptr;
    step.readbacks.clear();
    return nullptr;
  }
  graph->readbacks = std::move(step.readbacks);
  step.readbacks.clear();
  return graph;
}

}  // namespace dynamoe::cuda
