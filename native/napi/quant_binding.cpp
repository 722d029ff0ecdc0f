#include "quant_binding.h"

#include <string>

#include "../core/quant.h"
#include "js_args.h"
#include "js_errors.h"

namespace dynamoe {

namespace {

// Values dequantized on the JS thread at most: about a millisecond of work, so the event loop never waits long.
constexpr size_t kMaxValues = size_t{1} << 22;

}  // namespace

Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const QuantType type = requireQuantType(info[0], "type");
  const QuantTraits traits = quantTraits(type);
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throwJs(env, code::kType, "data must be a Uint8Array of quantized blocks, got " + describe(info[1]));
  }
  Napi::Object shape = Napi::Object::New(env);
  shape.Set("rows", info[2]);
  shape.Set("cols", info[3]);
  const int rows = readInt(shape, "rows", 1, 1 << 30);
  const int cols = readInt(shape, "cols", 1, 1 << 30);
  if (cols % traits.blockElements != 0) {
    throwJs(env, code::kShape,
            "cols (" + std::to_string(cols) + ") must be a multiple of the " + traits.name + " block size " +
                std::to_string(traits.blockElements));
  }
  const size_t values = static_cast<size_t>(rows) * cols;
  if (values > kMaxValues) {
    throwJs(env, code::kShape, "dequantize takes at most " + std::to_string(kMaxValues) + " values, got " +
                                   std::to_string(values));
  }
  Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
  const size_t rowBytes = quantRowBytes(type, cols);
  if (data.ElementLength() != rows * rowBytes) {
    throwJs(env, code::kShape,
            "data must hold " + std::to_string(rows * rowBytes) + " bytes (" + std::to_string(rows) + " rows of " +
                std::to_string(cols) + " " + traits.name + " values), got " + std::to_string(data.ElementLength()));
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, values);
  for (int r = 0; r < rows; ++r) {
    dequantizeRow(type, data.Data() + r * rowBytes, cols, out.Data() + static_cast<size_t>(r) * cols);
  }
  return out;
}

}  // namespace dynamoe
