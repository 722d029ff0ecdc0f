// GPU memory checks made before anything is uploaded or allocated, so a model or layer that cannot fit is refused
// with the sizes named (ERR_DYNAMOE_OUT_OF_MEMORY) instead of failing half-way.
#pragma once

#include <cstddef>

namespace dynamoe::cuda {

// Throws ERR_DYNAMOE_OUT_OF_MEMORY naming `what`, its size and the GPU's free and total memory when `bytes` exceeds
// the free memory.
void requireFreeMemory(size_t bytes, const char* what);

// Free and total bytes of device 0's memory now.
void deviceMemory(size_t* freeBytes, size_t* totalBytes);

// Makes the device's default stream-ordered pool keep freed scratch for the next forward (once per process).
void keepPoolMemory();

}  // namespace dynamoe::cuda
