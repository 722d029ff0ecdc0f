// The CUDA backend as the addon sees it: what the GPU probe found, and the core's backend interface. The CUDA build
// (CMakeLists.txt) implements it in cuda/; the CPU-only build (binding.gyp) links cuda_unavailable.cpp, whose backend
// reports why it cannot run.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "../native/core/backend.h"

namespace dynamoe::cuda {

// What the addon found when it probed for a GPU (once per process).
struct BackendStatus {
  bool built = false;        // this binary contains the CUDA kernels
  bool available = false;    // a GPU and a driver this binary can run on were found
  bool wholeModels = false;  // Backend::createModel runs whole models (the CUDA build, on a usable GPU)
  std::string error;         // why not available: a cudaError name ("cudaErrorInsufficientDriver") or "notBuilt"
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

// Device 0's free and total memory now; false (and nothing written) when no usable GPU was found.
bool deviceMemoryNow(size_t* freeBytes, size_t* totalBytes);

// The CUDA backend; its requireUsable() (and every call that needs the GPU) throws ERR_DYNAMOE_DEVICE saying why
// when no usable GPU was found.
const Backend& cudaBackend();

}  // namespace dynamoe::cuda
