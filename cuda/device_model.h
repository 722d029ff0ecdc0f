// The CUDA graph executor: a model's nodes uploaded into CUDA ops over f32 activation buffers in GPU memory, with
// the KV cache in a device block pool; one step = its inputs uploaded once, every op enqueued on one stream with no
// host synchronisation, then the asked-for logits (or log-probabilities) and statistics copied back.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../native/core/backend.h"
#include "device_kv_pool.h"
#include "device_step.h"

namespace dynamoe::cuda {

class PinnedPool;
class StepGraphCache;
struct StepGraph;

class CudaModel final : public Model {
 public:
  // Throws ERR_DYNAMOE_OUT_OF_MEMORY when the GPU cannot hold the KV pool.
  CudaModel(GraphLayout layout, DType dtype, int kvPoolTokens);
  ~CudaModel() override;

  const GraphLayout& layout() const override { return layout_; }
  void addNode(const GraphNode& node) override;
  size_t weightBytes() const override;
  std::shared_ptr<Sequence> createSequence(int capacity) override;
  KvPoolState kvPool() const override { return kvPool_->state(); }
  void forward(const StepRequest& request) const override;
  void close() override;

 private:
  GraphLayout layout_;
  DType dtype_;
  int multiprocessors_ = 0;
  mutable std::mutex opsMutex_;  // nodes are added on worker threads while weightBytes() may be asked
  std::vector<std::unique_ptr<DeviceOp>> ops_;
  std::vector<std::string> opRanges_;  // NVTX range of each op: "layer 3/attention"
  int layer_ = 0;                      // of the next node
  bool afterFeedForward_ = false;      // the next residual add ends a layer
  std::shared_ptr<const DeviceMatrix> embeddingTable_;  // shared with a tied LM head
  std::shared_ptr<DeviceKvPool> kvPool_;
  // Captures `step` (its memory bound by `bind`, its ops enqueued by `enqueueOps`) into a graph; null when the
  // capture fails (the step then runs uncaptured).
  std::unique_ptr<StepGraph> capture(DeviceStep& step, const std::string& shape, size_t memoryBytes,
                                     size_t scratchBytes, const std::function<void(char*)>& bind,
                                     const std::function<void()>& enqueueOps) const;

  std::unique_ptr<PinnedPool> pinned_;  // host staging of the steps' copies back
  std::unique_ptr<StepGraphCache> graphs_;  // decode steps captured per shape
};

}  // namespace dynamoe::cuda
