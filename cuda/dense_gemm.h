// Dense GEMMs of the graph ops (linear layers, dense MLPs, the LM head) as one-group calls of the MoE grouped GEMMs:
// the GEMV for decode-sized row counts, the f32 SIMT GEMM, or the f16/bf16 tensor-core GEMM. Also the uploads of
// their weights into DeviceMatrix and the conversion of f32 activation rows into the weights' dtype.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../native/core/graph.h"
#include "../native/core/moe_stages.h"
#include "device_step.h"

namespace dynamoe::cuda {

// source [rows][cols] -> [paddedDimension(rows)][paddedDimension(cols)] of `dtype`, zero past rows x cols; a
// quantized source keeps its blocks (zero blocks past cols) and takes bf16 activations. Throws kShape for a missing
// source.
DeviceMatrix uploadDenseMatrix(const MatrixSource& source, int rows, int cols, DType dtype, const char* what);

// gate and up [ffn][hidden] (both plain, or both of one quantized type) interleaved in blocks of 8 rows (moe_kernels.h, Epilogue::SwiGlu):
// [2 * paddedDimension(ffn)][paddedDimension(hidden)]. Its rows are all "logical" (rows = paddedRows): the padding
// features' gate and up rows are zero, so the SwiGLU of a padding feature is exactly 0.
DeviceMatrix uploadDenseGateUp(const MatrixSource& gate, const MatrixSource& up, int ffn, int hidden, DType dtype,
                               const char* what);

// One dense GEMM: output rows r < rows = epilogue(input row (rowIndex ? rowIndex[r] : r) . weights^T).
// n = weights.paddedRows output columns for Scaled (f32, times rowScale[r] when set), n / 2 for SwiGlu (stored in
// weights.dtype); k = weights.paddedCols.
struct DenseGemm {
  const DeviceMatrix* weights = nullptr;
  const void* input = nullptr;        // rows in weights.dtype, at least paddedCols readable elements each
  size_t inputStride = 0;             // elements
  const int32_t* rowIndex = nullptr;  // device [rows]: input row of each GEMM row; null: row r
  int rows = 0;
  Epilogue epilogue = Epilogue::Scaled;
  const float* rowScale = nullptr;    // Scaled only: device [rows] or null (1)
  void* output = nullptr;             // [rows][outputStride]
  size_t outputStride = 0;            // elements
  int multiprocessors = 0;            // persistent grid size of the tiled GEMMs (0: one block per work item)
};
void launchDenseGemm(const DenseGemm& gemm, cudaStream_t stream);

// Elements of `dtype` the f32 input of a GEMM over `rows` rows of `weights` needs converted (0 for f32 weights,
// which read the f32 activation rows themselves).
size_t denseInputScratchElements(const DeviceMatrix& weights, int rows);

// f32 activation rows -> [rows][paddedCols] of `dtype` at `out`: row r is input row (rowIndex ? rowIndex[r] : r),
// columns < cols copied and the rest zero.
void launchConvertRows(const float* input, size_t inputStride, const int32_t* rowIndex, int rows, int cols,
                       int paddedCols, void* out, DType dtype, cudaStream_t stream);

// The GEMM of f32 activation rows (an activation buffer, stride >= weights.paddedCols, zero past its logical
// columns): converts them into `scratch` (denseInputScratchElements(weights, rows) elements of weights.dtype; unused
// for f32) when the weights are f16/bf16, then launches the GEMM. `gemm.input` and `gemm.inputStride` are set here.
void launchDenseGemmF32Input(DenseGemm gemm, const float* input, size_t inputStride, void* scratch,
                             cudaStream_t stream);

}  // namespace dynamoe::cuda
