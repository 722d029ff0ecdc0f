// One native op of a model graph, and the state of one forward step the ops run on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/model_step.h"
#include "../core/routing_policy.h"
#include "kv_cache.h"
#include "thread_scratch.h"

namespace dynamoe::cpu {

// One segment's rows of a step (StepSegment): rows [firstRow, firstRow + rows), at positions position ...
struct SegmentRows {
  const StepSegment* request = nullptr;
  KvCache* cache = nullptr;
  int firstRow = 0;
  int rows = 0;
  int position = 0;  // of its first row in its sequence
};

struct GraphStep {
  int tokens = 0;                        // rows of all segments
  std::vector<int32_t> tokenIds;         // [tokens]
  std::vector<int32_t> rowPositions;     // [tokens]: each row's position in its sequence
  std::vector<int32_t> rowSegments;      // [tokens]: each row's segment
  std::vector<SegmentRows> segments;
  std::vector<float*> buffers;           // activation buffer b: [tokens][strides[b]]
  std::vector<size_t> strides;
  ScratchBuffers* scratch = nullptr;     // the step's kernel scratch
};

class GraphOp {
 public:
  virtual ~GraphOp() = default;
  virtual void run(GraphStep& step) const = 0;
  virtual size_t weightBytes() const { return 0; }
};

}  // namespace dynamoe::cpu
