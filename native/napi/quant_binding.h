// dequantize(type, data: Uint8Array, rows, cols): GGUF quantized rows to f32, for small tensors (router and norm
// weights a file stores quantized, and tests); large matrices stay quantized in the kernels.
#pragma once

#include <napi.h>

namespace dynamoe {

Napi::Value Dequantize(const Napi::CallbackInfo& info);

}  // namespace dynamoe
