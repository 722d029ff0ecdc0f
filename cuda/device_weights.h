// Expert weights packed into the layouts the CUDA kernels read and uploaded to GPU memory, a bounded slice of rows
// at a time through a host staging buffer (never a second full copy on the host).
#pragma once

#include <vector>

#include "../native/core/moe_config.h"
#include "device_buffer.h"

namespace dynamoe::cuda {

// Every upload takes f32/f16/bf16 sources (converted to `dtype`) or quantized ones (copied as they are, rows of
// quantRowBytes(type, paddedK) bytes with zero blocks past k, which decode to 0). All sources of one call share a
// type: a mix throws ERR_DYNAMOE_UNSUPPORTED, rows that are not whole blocks ERR_DYNAMOE_SHAPE.

// The one quantized type of `sources` (None when they are plain values); throws on a mix.
QuantType sharedQuantType(const std::vector<MatrixSource>& sources, const char* what);
// Bytes of one packed row of paddedK values: quantized, or in `dtype`.
size_t packedRowBytes(QuantType quant, DType dtype, int paddedK);

// `source` as f32 values: itself when it is plain, else its rows x cols values dequantized into *storage (for weights
// a kernel reads as plain values, such as MLA's per-head up-projections).
MatrixSource plainSource(const MatrixSource& source, int rows, int cols, std::vector<float>* storage);

// [experts][rows][paddedK]: row r of matrix e is sources[e] row r (zero past `rows` and past k), in `dtype`.
DeviceBuffer uploadMatrices(const std::vector<MatrixSource>& sources, int rows, int paddedRows, int k,
                            int paddedK, DType dtype, const char* what);

// [experts][2 * paddedFfn][paddedHidden], gate and up interleaved in blocks of 8 rows (moe_kernels.h, SwiGlu).
DeviceBuffer uploadGateUp(const std::vector<MatrixSource>& gate, const std::vector<MatrixSource>& up,
                          int ffn, int paddedFfn, int hidden, int paddedHidden, DType dtype, const char* what);

}  // namespace dynamoe::cuda
