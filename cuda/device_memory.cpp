#include "device_memory.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda_check.h"

namespace dynamoe::cuda {

namespace {

// Freed stream-ordered scratch the pool keeps for the next forward instead of returning it to the driver.
constexpr uint64_t kPoolKeepBytes = uint64_t{1} << 30;

}  // namespace

void deviceMemory(size_t* freeBytes, size_t* totalBytes) {
  checkCuda(cudaMemGetInfo(freeBytes, totalBytes), "reading the GPU's free memory");
}

void requireFreeMemory(size_t bytes, const char* what) {
  size_t freeBytes = 0;
  size_t totalBytes = 0;
  deviceMemory(&freeBytes, &totalBytes);
  if (bytes > freeBytes) {
    throw Error(code::kOutOfMemory, std::string(what) + " needs " + std::to_string(bytes >> 20) + " MiB of GPU " +
                                        "memory; " + std::to_string(freeBytes >> 20) + " MiB of " +
                                        std::to_string(totalBytes >> 20) + " MiB are free");
  }
}

void keepPoolMemory() {
  static const bool done = [] {
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
      uint64_t keep = kPoolKeepBytes;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    return true;
  }();
  (void)done;
}

}  // namespace dynamoe::cuda
