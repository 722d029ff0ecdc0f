// CUDA runtime errors as coded dynamoe errors: allocation failures are ERR_DYNAMOE_OUT_OF_MEMORY, everything else
// ERR_DYNAMOE_DEVICE naming the CUDA error and what was being done.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../native/core/errors.h"

namespace dynamoe::cuda {

inline void checkCuda(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  const std::string detail = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
  if (status == cudaErrorMemoryAllocation) {
    throw Error(code::kOutOfMemory, std::string("GPU out of memory in ") + what + " (" + detail + ")");
  }
  throw Error(code::kDevice, std::string("CUDA error in ") + what + " (" + detail + ")");
}

}  // namespace dynamoe::cuda
