// CUDA graphs of a model's decode steps: a step shape (segments, logit and statistics flags, context bucket) is run
// uncaptured once, captured into a graph the next time it comes, and replayed after that, so a decode step is one
// graph launch instead of hundreds of kernel launches. Each captured instance owns fixed device memory (the step's
// tables, activations, logits and op scratch), so it serves one step at a time; a shape whose capture fails runs
// uncaptured from then on. DYNAMOE_CUDA_GRAPHS=0 turns capture off.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device_buffer.h"
#include "device_step.h"

namespace dynamoe::cuda {

// One captured step: its graph, its fixed memory, and the copies back its ops asked for.
struct StepGraph {
  std::string shape;
  cudaGraphExec_t exec = nullptr;
  DeviceBuffer memory;  // the step's tables, activations, logits and log-probabilities (the executor's layout)
  DeviceBuffer scratch;  // the ops' step-long scratch (StepArena over a fixed region)
  std::vector<DeviceStep::Readback> readbacks;
  StepGraph() = default;
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;
  ~StepGraph() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }
};

class StepGraphCache {
 public:
  // What the cache knows of a shape before it has a graph.
  struct ShapeRecord {
    bool seen = false;          // run uncaptured once: its scratch size is known and every kernel is loaded
    bool uncapturable = false;  // a capture failed: always uncaptured
    size_t scratchBytes = 0;
  };

  StepGraphCache();
  bool enabled() const { return enabled_; }
  // A free captured instance of `shape`, taken for one step; null when none is free.
  std::unique_ptr<StepGraph> take(const std::string& shape);
  // Gives an instance back after a successful step (one that failed is dropped instead).
  void give(std::unique_ptr<StepGraph> graph);
  ShapeRecord record(const std::string& shape);
  void noteRun(const std::string& shape, size_t scratchBytes);
  void noteUncapturable(const std::string& shape);
  // Whether another instance may be made (the cache holds at most kMaxGraphs).
  bool roomForAnother();
  void forgetInstance();
  void clear();

 private:
  static constexpr int kMaxGraphs = 64;
  bool enabled_;
  std::mutex mutex_;
  std::multimap<std::string, std::unique_ptr<StepGraph>> free_;
  std::map<std::string, ShapeRecord> shapes_;
  int instances_ = 0;
};

}  // namespace dynamoe::cuda
