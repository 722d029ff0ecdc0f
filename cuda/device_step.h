// One forward step of a whole model on the GPU as its ops see it, and the op interface the CUDA graph executor
// (device_model.cpp) runs. Activations are f32 device buffers whose rows are padded to 128 columns and start the step
// zeroed: an op writes its logical columns only (or zeros past them), so the GEMMs read zero K tails.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../native/core/errors.h"
#include "../native/core/graph.h"
#include "../native/core/model_step.h"
#include "device_buffer.h"
#include "device_kv_pool.h"

namespace dynamoe::cuda {

// Rows of every activation buffer and every uploaded matrix are padded to this many columns (moe_kernels.h's
// kDimensionAlignment), and matrices' row counts too, so a GEMM's n and k never have a tail.
// A dense weight matrix in GPU memory: [paddedRows][paddedCols] of `dtype`, zero past rows x cols (uploadMatrices).
struct DeviceMatrix {
  DeviceBuffer data;
  int rows = 0, cols = 0;
  int paddedRows = 0, paddedCols = 0;
  DType dtype = DType::F32;  // of the values, or of the activations multiplied with quantized rows (bf16)
  QuantType quant = QuantType::None;  // set: rows of GGUF blocks, quantRowBytes(quant, paddedCols) bytes each
};

// Scratch that lives as long as the arena: a step's (until the step ends) or an op's (until its enqueue returns).
// Stream-ordered allocations freed in stream order, or, for a step captured in a CUDA graph, consecutive pieces of
// a fixed region (the same addresses on every replay), sized by the shape's first, uncaptured run.
class StepArena {
 public:
  explicit StepArena(cudaStream_t stream) : stream_(stream) {}
  StepArena(char* region, size_t regionBytes) : region_(region), regionBytes_(regionBytes) {}
  StepArena(const StepArena&) = delete;
  StepArena& operator=(const StepArena&) = delete;
  // 256-byte aligned device memory of `bytes` (at least 1).
  void* take(size_t bytes, const char* what) {
    const size_t size = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
    used_ += size;
    if (region_ != nullptr) {
      if (used_ > regionBytes_) {
        throw Error(code::kInternal, std::string("a captured step needs more scratch than its first run for ") + what);
      }
      return region_ + used_ - size;
    }
    buffers_.push_back(std::make_unique<StreamBuffer>(size, stream_, what));
    return buffers_.back()->as<void>();
  }
  template <typename T>
  T* take(size_t count, const char* what) {
    return static_cast<T*>(take(count * sizeof(T), what));
  }
  size_t used() const { return used_; }

 private:
  cudaStream_t stream_ = nullptr;
  char* region_ = nullptr;
  size_t regionBytes_ = 0;
  size_t used_ = 0;
  std::vector<std::unique_ptr<StreamBuffer>> buffers_;
};

// One segment's rows (a StepSegment) as the host knows them.
struct DeviceSegmentRows {
  const StepSegment* request = nullptr;
  int firstRow = 0;
  int rows = 0;
  int position = 0;  // of its first row in its sequence (tokens cached before the step)
};

// A row whose logits the step returns or scores: the LM head computes these rows only.
struct LogitRow {
  int32_t row = 0;      // step row
  int32_t target = -1;  // scoring: the id whose log-probability is asked (-1: NaN); not scoring: -1
  bool scored = false;
};

struct DeviceStep {
  cudaStream_t stream = nullptr;
  StepArena* arena = nullptr;
  int tokens = 0;                          // rows of all segments
  std::vector<DeviceSegmentRows> segments;  // host copy
  int maxContext = 0;  // largest position + 1 of any row: keys any query attends to
  // Device arrays, uploaded once per step:
  const int32_t* tokenIds = nullptr;         // [tokens]
  const int32_t* rowPositions = nullptr;     // [tokens]: each row's position in its sequence
  const int32_t* rowSegments = nullptr;      // [tokens]: each row's segment
  const int32_t* blockTables = nullptr;      // [segments][blockTableWidth]: pool blocks of each sequence, in order
  int blockTableWidth = 0;
  const DeviceKvPool* kvPool = nullptr;
  // [moe slots][segments]: each segment's routing policy of each MoE layer (StepSegment::policies), on the device.
  const RoutingPolicy* moePolicies = nullptr;
  // The step is being captured into a CUDA graph: ops must take every per-step value from the device tables (never
  // a host value of this step's requests, which a replay would repeat).
  bool capturing = false;
  // Activation buffer b: [tokens][strides[b]] f32 on the device.
  std::vector<float*> buffers;
  std::vector<size_t> strides;
  // The LM head's rows (host and device copies); its op writes their logits and log-probabilities.
  std::vector<LogitRow> logitRows;
  const int32_t* logitRowIndex = nullptr;  // [logitRows]: step row
  const int32_t* logitTargets = nullptr;   // [logitRows]: target id or -1
  float* logits = nullptr;                 // [logitRows][logitStride]; the model copies unscored rows back
  size_t logitStride = 0;                  // paddedDimension(vocab): the LM head's GEMM writes whole padded rows
  double* logProbs = nullptr;              // [logitRows]; scored rows only
  const TokenChoice* logitChoices = nullptr;  // [logitRows]: each row's StepSegment::choice (limit 0: none)
  int32_t* chosenTokens = nullptr;            // [logitRows]: chosen rows' ids
  bool rankedChoices = false;                 // some row samples with top-k or top-p (part of a captured shape)
  // Device results the host needs after the step (router statistics, non-finite checks): the executor copies each
  // into pinned host memory after the last op and calls `use` with it and the step once the step's work is done
  // (a captured step replays with other segments: `use` reads them from the step it is given, never from the one
  // it was made in); `use` may throw, and the step then fails without committing its positions.
  struct Readback {
    const void* device = nullptr;
    size_t bytes = 0;
    std::function<void(const void* host, const DeviceStep& step)> use;
  };
  std::vector<Readback> readbacks;
};

class DeviceOp {
 public:
  virtual ~DeviceOp() = default;
  // Enqueues the op's kernels on step.stream; never synchronises.
  virtual void enqueue(DeviceStep& step) const = 0;
  virtual size_t weightBytes() const { return 0; }
  virtual const char* name() const = 0;  // its NVTX range ("attention", "moe", ...)
};

}  // namespace dynamoe::cuda
