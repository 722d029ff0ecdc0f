// quantMatmul() of the CUDA backend: one dense GEMM over a quantized matrix, run through the same upload and GEMM
// launch a model's quantized linear layers use, so tests can hold those kernels to a reference on any shape.
#include <cstdint>
#include <vector>

#include "cuda_backend.h"
#include "dense_gemm.h"
#include "device_ops.h"
#include "moe_kernels.h"

namespace dynamoe::cuda {

void quantMatmulOnDevice(QuantType type, const uint8_t* weights, int n, int k, const float* input, int m,
                         float* out) {
  requireDevice();
  if (n <= 0 || k <= 0 || m <= 0) throw Error(code::kShape, "quantMatmul: n, k and m must be positive");
  const DeviceMatrix matrix = uploadDenseMatrix(MatrixSource{weights, DType::F32, type}, n, k, DType::BF16,
                                                "uploading quantMatmul's weights");
  OwnedStream stream;
  const size_t inputBytes = static_cast<size_t>(m) * k * 4;
  const size_t outputStride = static_cast<size_t>(matrix.paddedRows);
  DeviceBuffer deviceInput(inputBytes, "allocating quantMatmul's input");
  DeviceBuffer scratch(denseInputScratchElements(matrix, m) * dtypeBytes(matrix.dtype), "allocating its scratch");
  DeviceBuffer deviceOutput(static_cast<size_t>(m) * outputStride * 4, "allocating its output");
  checkCuda(cudaMemcpyAsync(deviceInput.as<void>(), input, inputBytes, cudaMemcpyHostToDevice, stream.get()),
            "copying quantMatmul's input to the GPU");
  DenseGemm gemm;
  gemm.weights = &matrix;
  gemm.rows = m;
  gemm.epilogue = Epilogue::Scaled;
  gemm.output = deviceOutput.as<void>();
  gemm.outputStride = outputStride;
  gemm.multiprocessors = backendStatus().multiprocessors;
  launchDenseGemmF32Input(gemm, deviceInput.as<float>(), static_cast<size_t>(k), scratch.as<void>(), stream.get());
  std::vector<float> padded(static_cast<size_t>(m) * outputStride);
  checkCuda(cudaMemcpyAsync(padded.data(), deviceOutput.as<void>(), padded.size() * 4, cudaMemcpyDeviceToHost,
                            stream.get()),
            "copying quantMatmul's output back");
  stream.synchronize("quantMatmul on the GPU");
  for (int r = 0; r < m; ++r) {
    for (int c = 0; c < n; ++c) out[static_cast<size_t>(r) * n + c] = padded[r * outputStride + c];
  }
}

}  // namespace dynamoe::cuda
