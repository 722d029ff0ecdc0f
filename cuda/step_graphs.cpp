#include "step_graphs.h"

#include <cstdlib>
#include <cstring>

namespace dynamoe::cuda {

StepGraphCache::StepGraphCache() {
  const char* setting = std::getenv("DYNAMOE_CUDA_GRAPHS");
  enabled_ = setting == nullptr || std::strcmp(setting, "0") != 0;
}

std::unique_ptr<StepGraph> StepGraphCache::take(const std::string& shape) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = free_.find(shape);
  if (found == free_.end()) return nullptr;
  std::unique_ptr<StepGraph> graph = std::move(found->second);
  free_.erase(found);
  return graph;
}

void StepGraphCache::give(std::unique_ptr<StepGraph> graph) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string shape = graph->shape;
  free_.emplace(std::move(shape), std::move(graph));
}

StepGraphCache::ShapeRecord StepGraphCache::record(const std::string& shape) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = shapes_.find(shape);
  return found == shapes_.end() ? ShapeRecord{} : found->second;
}

void StepGraphCache::noteRun(const std::string& shape, size_t scratchBytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  ShapeRecord& record = shapes_[shape];
  record.seen = true;
  record.scratchBytes = std::max(record.scratchBytes, scratchBytes);
}

void StepGraphCache::noteUncapturable(const std::string& shape) {
  std::lock_guard<std::mutex> lock(mutex_);
  shapes_[shape].uncapturable = true;
}

bool StepGraphCache::roomForAnother() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (instances_ >= kMaxGraphs) return false;
  ++instances_;
  return true;
}

void StepGraphCache::forgetInstance() {
  std::lock_guard<std::mutex> lock(mutex_);
  --instances_;
}

void StepGraphCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  instances_ -= static_cast<int>(free_.size());
  free_.clear();
}

}  // namespace dynamoe::cuda
