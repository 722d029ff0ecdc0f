// dequantize(type, data: Uint8Array, rows, cols): GGUF quantized rows to f32, for small tensors (router and norm
// weights a file stores quantized, and tests); large matrices stay quantized in the kernels. quantize: the other way.
#pragma once

#include <napi.h>

namespace dynamoe {

Napi::Value Dequantize(const Napi::CallbackInfo& info);
// quantize(type, data: Float32Array | Uint16Array (with dtype), rows, cols, dtype?): Promise<Uint8Array> of GGUF
// blocks, quantized on a worker thread (q8_0, q4_0, q4_k, q6_k).
Napi::Value Quantize(const Napi::CallbackInfo& info);
// quantMatmul(type, weights: Uint8Array (n rows of k values), n, k, input: Float32Array (m x k), m): Float32Array
// m x n of input x weights^T, through the CPU GEMM driver and kernels the models use (the active kernel family and
// quantized-activation setting); a test and benchmark hook for the quantized kernels.
Napi::Value QuantMatmul(const Napi::CallbackInfo& info);

}  // namespace dynamoe
