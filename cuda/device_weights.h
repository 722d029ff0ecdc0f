// Expert weights packed into the layouts the CUDA kernels read and uploaded to GPU memory, a bounded slice of rows
// at a time through a host staging buffer (never a second full copy on the host).
#pragma once

#include <vector>

#include "../native/core/moe_config.h"
#include "device_buffer.h"

namespace dynamoe::cuda {

// [experts][rows][paddedK]: row r of matrix e is sources[e] row r (zero past `rows` and past k), in `dtype`.
DeviceBuffer uploadMatrices(const std::vector<MatrixSource>& sources, int rows, int paddedRows, int k,
                            int paddedK, DType dtype, const char* what);

// [experts][2 * paddedFfn][paddedHidden], gate and up interleaved in blocks of 8 rows (moe_kernels.h, SwiGlu).
DeviceBuffer uploadGateUp(const std::vector<MatrixSource>& gate, const std::vector<MatrixSource>& up,
                          int ffn, int paddedFfn, int hidden, int paddedHidden, DType dtype, const char* what);

}  // namespace dynamoe::cuda
