// CUDA events between the stages of a forward, turned into microseconds per stage (layer.profile()).
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "../native/core/moe_config.h"
#include "cuda_check.h"

namespace dynamoe::cuda {

// Events between the stages of each pass; read after the stream is synchronised.
class StageClock {
 public:
  static constexpr int kMarks = 6;  // start, route, plan, gemm1, gemm2, finalize
  ~StageClock() {
    for (cudaEvent_t event : events_) cudaEventDestroy(event);
  }
  void mark(cudaStream_t stream) {
    cudaEvent_t event;
    checkCuda(cudaEventCreate(&event), "creating a CUDA event");
    events_.push_back(event);
    checkCuda(cudaEventRecord(event, stream), "recording a CUDA event");
  }
  // Adds this run's stage times to `times` (microseconds).
  void addTo(StageTimes& times) const {
    for (size_t first = 0; first + kMarks <= events_.size(); first += kMarks) {
      double* stages[] = {&times.routeUs, &times.planUs, &times.gemm1Us, &times.gemm2Us, &times.finalizeUs};
      for (int s = 0; s < kMarks - 1; ++s) *stages[s] += elapsedUs(events_[first + s], events_[first + s + 1]);
    }
    if (!events_.empty()) times.totalUs += elapsedUs(events_.front(), events_.back());
  }

 private:
  static double elapsedUs(cudaEvent_t from, cudaEvent_t to) {
    float ms = 0;
    checkCuda(cudaEventElapsedTime(&ms, from, to), "reading a CUDA event");
    return ms * 1000.0;
  }
  std::vector<cudaEvent_t> events_;
};

}  // namespace dynamoe::cuda
