// Dense GEMMs as one-group calls of the MoE grouped GEMMs (no tile table, no group offsets: the kernels' dense
// case), their weight uploads, and the f32 -> f16/bf16 row conversion (with an optional row gather) they read.
#include "dense_gemm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda_check.h"
#include "device_weights.h"
#include "element_types.cuh"
#include "moe_kernels.h"

namespace dynamoe::cuda {
namespace {

constexpr int kConvertThreads = 256;
constexpr long long kMaxConvertBlocks = 65536;  // grid-stride beyond this: the conversion is memory bound

void requireSource(const MatrixSource& source, const char* what) {
  if (source.data == nullptr) throw Error(code::kShape, std::string(what) + ": the weight matrix is missing");
}

// Quantized matrices stay in their blocks and are multiplied with bf16 activations; others take `dtype`.
DType activationDtype(QuantType quant, DType dtype) { return quant != QuantType::None ? DType::BF16 : dtype; }

// One thread per output element: a warp reads and writes 32 consecutive columns of one row (paddedCols is a
// multiple of 128, so a warp never straddles two rows).
template <typename T>
__global__ void __launch_bounds__(kConvertThreads)
    convertRowsKernel(const float* input, size_t inputStride, const int32_t* rowIndex, int rows, int cols,
                      int paddedCols, T* out) {
  const size_t total = static_cast<size_t>(rows) * paddedCols;
  const size_t step = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const size_t row = i / paddedCols;
    const int column = static_cast<int>(i - row * paddedCols);
    const size_t source = rowIndex != nullptr ? static_cast<size_t>(rowIndex[row]) : row;
    const float value = column < cols ? input[source * inputStride + column] : 0.0f;
    out[i] = ElementOps<T>::fromFloat(value);
  }
}

template <typename T>
void launchConvert(const float* input, size_t inputStride, const int32_t* rowIndex, int rows, int cols,
                   int paddedCols, T* out, cudaStream_t stream) {
  const long long total = static_cast<long long>(rows) * paddedCols;
  const long long blocks = std::min((total + kConvertThreads - 1) / kConvertThreads, kMaxConvertBlocks);
  convertRowsKernel<T><<<static_cast<unsigned>(blocks), kConvertThreads, 0, stream>>>(input, inputStride, rowIndex,
                                                                                      rows, cols, paddedCols, out);
  checkCuda(cudaGetLastError(), "launching the dense row conversion");
}

}  // namespace

DeviceMatrix uploadDenseMatrix(const MatrixSource& source, int rows, int cols, DType dtype, const char* what) {
  requireSource(source, what);
  if (rows <= 0 || cols <= 0) throw Error(code::kShape, std::string(what) + ": matrix sizes must be positive");
  DeviceMatrix matrix;
  matrix.rows = rows;
  matrix.cols = cols;
  matrix.paddedRows = paddedDimension(rows);
  matrix.paddedCols = paddedDimension(cols);
  matrix.quant = source.quant;
  matrix.dtype = activationDtype(source.quant, dtype);
  matrix.data = uploadMatrices({source}, rows, matrix.paddedRows, cols, matrix.paddedCols, matrix.dtype, what);
  return matrix;
}

DeviceMatrix uploadDenseGateUp(const MatrixSource& gate, const MatrixSource& up, int ffn, int hidden, DType dtype,
                               const char* what) {
  requireSource(gate, what);
  requireSource(up, what);
  if (ffn <= 0 || hidden <= 0) throw Error(code::kShape, std::string(what) + ": matrix sizes must be positive");
  const int paddedFfn = paddedDimension(ffn);
  DeviceMatrix matrix;
  matrix.rows = 2 * paddedFfn;  // interleaved: padding features sit between real ones' blocks, all rows count
  matrix.cols = hidden;
  matrix.paddedRows = 2 * paddedFfn;
  matrix.paddedCols = paddedDimension(hidden);
  matrix.quant = sharedQuantType({gate, up}, what);
  matrix.dtype = activationDtype(matrix.quant, dtype);
  matrix.data = uploadGateUp({gate}, {up}, ffn, paddedFfn, hidden, matrix.paddedCols, matrix.dtype, what);
  return matrix;
}

size_t denseInputScratchElements(const DeviceMatrix& weights, int rows) {
  if (weights.dtype == DType::F32 || rows <= 0) return 0;
  return static_cast<size_t>(rows) * weights.paddedCols;
}

void launchConvertRows(const float* input, size_t inputStride, const int32_t* rowIndex, int rows, int cols,
                       int paddedCols, void* out, DType dtype, cudaStream_t stream) {
  if (cols <= 0 || paddedCols < cols || inputStride < static_cast<size_t>(cols)) {
    throw Error(code::kInternal, "dense row conversion needs 0 < cols <= paddedCols and cols <= inputStride");
  }
  if (rows <= 0) return;  // a zero-sized grid is a launch error
  switch (dtype) {
    case DType::F32:
      launchConvert(input, inputStride, rowIndex, rows, cols, paddedCols, static_cast<float*>(out), stream);
      break;
    case DType::F16:
      launchConvert(input, inputStride, rowIndex, rows, cols, paddedCols, static_cast<__half*>(out), stream);
      break;
    case DType::BF16:
      launchConvert(input, inputStride, rowIndex, rows, cols, paddedCols, static_cast<__nv_bfloat16*>(out), stream);
      break;
  }
}

void launchDenseGemm(const DenseGemm& dense, cudaStream_t stream) {
  if (dense.rows <= 0) return;  // nothing to multiply (the launchers would launch an empty grid)
  const DeviceMatrix& weights = *dense.weights;
  const size_t outputColumns = dense.epilogue == Epilogue::SwiGlu ? weights.paddedRows / 2 : weights.paddedRows;
  // The kernels take int strides and read k = paddedCols elements of each input row, write n (or n / 2) columns.
  if (dense.inputStride < static_cast<size_t>(weights.paddedCols) || dense.outputStride < outputColumns ||
      dense.inputStride > static_cast<size_t>(INT32_MAX) || dense.outputStride > static_cast<size_t>(INT32_MAX)) {
    throw Error(code::kInternal, "dense GEMM: input or output rows narrower than the padded matrix");
  }
  GroupedGemm gemm;
  gemm.dtype = weights.dtype;
  gemm.weights = weights.data.as<void>();
  gemm.quant = weights.quant;
  gemm.weightRowBytes = packedRowBytes(weights.quant, weights.dtype, weights.paddedCols);
  // One group: never stepped (bytes when quantized, elements otherwise).
  gemm.groupStride = weights.quant != QuantType::None ? weights.paddedRows * gemm.weightRowBytes
                                                      : static_cast<size_t>(weights.paddedRows) * weights.paddedCols;
  gemm.n = weights.paddedRows;
  gemm.k = weights.paddedCols;
  gemm.input = dense.input;
  gemm.inputStride = static_cast<int>(dense.inputStride);
  gemm.rowToken = dense.rowIndex;
  gemm.rows = dense.rows;  // groupOffsets and the tile table stay null: the kernels' dense case
  gemm.rowScale = dense.epilogue == Epilogue::Scaled ? dense.rowScale : nullptr;
  gemm.output = dense.output;
  gemm.outputStride = static_cast<int>(dense.outputStride);
  gemm.multiprocessors = dense.multiprocessors;
  if (dense.rows <= kGemvMaxRows) {
    // Decode: the time is the weight traffic, which the GEMV streams exactly once.
    launchExpertGemv(gemm, 1, dense.epilogue, stream);
  } else if (weights.dtype == DType::F32) {
    gemm.tileRows = kSimtTileRows;
    gemm.maxTiles = (dense.rows + gemm.tileRows - 1) / gemm.tileRows;
    launchGemmSimtF32(gemm, dense.epilogue, stream);
  } else {
    gemm.tileRows = mmaTileRows(dense.rows);
    gemm.maxTiles = (dense.rows + gemm.tileRows - 1) / gemm.tileRows;
    launchGemmMma(gemm, dense.epilogue, stream);
  }
}

void launchDenseGemmF32Input(DenseGemm gemm, const float* input, size_t inputStride, void* scratch,
                             cudaStream_t stream) {
  if (gemm.rows <= 0) return;
  const DeviceMatrix& weights = *gemm.weights;
  if (weights.dtype == DType::F32) {
    // The f32 GEMMs read the activation rows as they are (and gather them themselves): columns past the logical
    // ones are zero in an activation buffer, and so are the weights' padding columns they meet.
    gemm.input = input;
    gemm.inputStride = inputStride;
  } else {
    launchConvertRows(input, inputStride, gemm.rowIndex, gemm.rows, weights.cols, weights.paddedCols, scratch,
                      weights.dtype, stream);
    gemm.input = scratch;
    gemm.inputStride = static_cast<size_t>(weights.paddedCols);
    gemm.rowIndex = nullptr;  // the conversion gathered them
  }
  launchDenseGemm(gemm, stream);
}

}  // namespace dynamoe::cuda
