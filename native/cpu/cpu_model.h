// The CPU graph executor: a model's nodes packed into CPU ops over activation buffers, run one step at a time on
// the thread pool.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "../core/backend.h"
#include "graph_op.h"
#include "kv_pool.h"
#include "packed_matrix.h"
#include "thread_scratch.h"

namespace dynamoe::cpu {

class CpuModel final : public Model {
 public:
  // `backend` builds the MoE layers of MoE nodes (the same layers MoELayer objects use).
  CpuModel(const Backend& backend, GraphLayout layout, DType dtype, int kvPoolTokens);

  const GraphLayout& layout() const override { return layout_; }
  void addNode(const GraphNode& node) override;
  size_t weightBytes() const override;
  std::shared_ptr<Sequence> createSequence(int capacity) override;
  KvPoolState kvPool() const override { return kvPool_->state(); }
  void forward(const StepRequest& request) const override;
  void close() override { scratchPool_->close(); }

 private:
  const Backend& backend_;
  GraphLayout layout_;
  DType dtype_;
  mutable std::mutex opsMutex_;  // nodes are added on worker threads while weightBytes() may be asked
  std::vector<std::unique_ptr<GraphOp>> ops_;
  std::shared_ptr<const PackedMatrix> embeddingTable_;  // shared with a tied LM head
  std::shared_ptr<KvBlockPool> kvPool_;  // shared with the sequences alive
  // Kernel scratch of the steps that ended, for the next ones (each running step holds a set of its own).
  std::shared_ptr<ScratchPool> scratchPool_ = std::make_shared<ScratchPool>();
};

}  // namespace dynamoe::cpu
