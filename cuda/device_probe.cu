// Finds out once per process whether this CUDA binary can run here: a driver, a GPU, and device code (or PTX) for
// it. Without them the addon stays usable on the CPU and says why (backendInfo().cudaError).
#include <string>

#include "cuda_backend.h"
#include "device_ops.h"
#include "cuda_check.h"

#ifndef DYNAMOE_CUDA_ARCHITECTURES
#define DYNAMOE_CUDA_ARCHITECTURES ""
#endif

namespace dynamoe::cuda {

namespace {

__global__ void probeKernel() {}

std::vector<std::string> builtArchitectures() {
  std::vector<std::string> names;
  const std::string list = DYNAMOE_CUDA_ARCHITECTURES;  // "sm_80,sm_90,compute_90", set by CMakeLists.txt
  size_t start = 0;
  while (start < list.size()) {
    const size_t end = list.find(',', start);
    names.push_back(list.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return names;
}

void markUnavailable(BackendStatus& status, cudaError_t error) {
  status.available = false;
  status.error = cudaGetErrorName(error);
  status.errorMessage = cudaGetErrorString(error);
  cudaGetLastError();  // the probe's error must not surface in a later, unrelated call
}

BackendStatus probe() {
  BackendStatus status;
  status.built = true;
  status.architectures = builtArchitectures();
  cudaRuntimeGetVersion(&status.runtimeVersion);
  cudaDriverGetVersion(&status.driverVersion);  // 0 without a driver
  int count = 0;  // left unwritten when the driver is missing
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    markUnavailable(status, error);
    return status;
  }
  status.deviceCount = count;
  if (count == 0) {
    markUnavailable(status, cudaErrorNoDevice);
    return status;
  }
  cudaDeviceProp properties = {};
  error = cudaGetDeviceProperties(&properties, 0);
  if (error != cudaSuccess) {
    markUnavailable(status, error);
    return status;
  }
  status.deviceName = properties.name;
  status.computeMajor = properties.major;
  status.computeMinor = properties.minor;
  status.multiprocessors = properties.multiProcessorCount;
  status.totalMemoryBytes = properties.totalGlobalMem;
  // Device code for this GPU (or PTX the driver can compile for it) must be in the binary.
  cudaFuncAttributes attributes = {};
  error = cudaFuncGetAttributes(&attributes, probeKernel);
  if (error != cudaSuccess) {
    markUnavailable(status, error);
    return status;
  }
  if (properties.major < 8) {
    status.available = false;
    status.error = "cudaErrorUnsupportedComputeCapability";
    status.errorMessage = "dynamoe's CUDA kernels need compute capability 8.0 or newer (Ampere, Hopper, ...); this GPU is " +
                          std::to_string(properties.major) + "." + std::to_string(properties.minor);
    return status;
  }
  status.available = true;
  status.wholeModels = true;
  return status;
}

}  // namespace

const BackendStatus& backendStatus() {
  static const BackendStatus status = probe();  // thread-safe, once per process
  return status;
}

void requireDevice() {
  const BackendStatus& status = backendStatus();
  if (status.available) return;
  throw Error(code::kDevice, "device 'cuda' is not available: " + status.error + " (" + status.errorMessage +
                                 "). Fix: run on a machine with an NVIDIA GPU (compute capability 8.0+) and a " +
                                 "driver for CUDA " + std::to_string(status.runtimeVersion / 1000) +
                                 ", or use device 'cpu' or 'auto'");
}

}  // namespace dynamoe::cuda
