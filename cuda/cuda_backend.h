// The narrow interface the addon calls for the CUDA backend. The CUDA build (CMakeLists.txt) implements it in
// cuda/; the CPU-only build (binding.gyp) links native/cuda_unavailable.cpp, which reports "not built".
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../native/cpu/moe_layer.h"
#include "../native/cpu/routing.h"
#include "../native/moe_block.h"
#include "../native/routing_policy.h"

namespace dynamoe::cuda {

// What the addon found when it probed for a GPU (once per process).
struct BackendStatus {
  bool built = false;      // this binary contains the CUDA kernels
  bool available = false;  // a GPU and a driver this binary can run on were found
  std::string error;       // why not available: a cudaError name ("cudaErrorInsufficientDriver") or "notBuilt"
  std::string errorMessage;
  int runtimeVersion = 0;  // CUDA runtime linked in (e.g. 13000)
  int driverVersion = 0;   // CUDA version the driver supports, 0 without a driver
  int deviceCount = 0;
  // Device 0, when available.
  std::string deviceName;
  int computeMajor = 0;
  int computeMinor = 0;
  int multiprocessors = 0;
  size_t totalMemoryBytes = 0;
  std::vector<std::string> architectures;  // device code in this binary, e.g. "sm_80", "sm_90", "compute_90"
};
const BackendStatus& backendStatus();

// Throws Error(ERR_DYNAMOE_DEVICE) saying why when no usable GPU was found.
void requireDevice();

// Packs and uploads the weights to GPU memory (one expert at a time through a host staging buffer); the
// returned block holds device memory only. Throws ERR_DYNAMOE_OUT_OF_MEMORY when the GPU cannot hold them.
std::shared_ptr<const MoeBlock> uploadMoeLayer(const cpu::MoeLayerConfig& config, const float* router,
                                               const std::vector<cpu::ExpertSources>& experts,
                                               const cpu::SharedExpertSources* shared);

// route() on the GPU: the fused routing kernel on host scores (copied in and out).
void routeOnDevice(const float* scores, int tokens, int experts, cpu::RouterInput input, const RoutingPolicy& policy,
                   const cpu::RoutingOutput& out);

}  // namespace dynamoe::cuda
