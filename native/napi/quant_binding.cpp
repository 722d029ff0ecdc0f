#include "quant_binding.h"

#include <string>

#include <vector>

#include "../core/quant.h"
#include "../core/quant_encode.h"
#include "backends.h"
#include "promise_worker.h"
#include "js_args.h"
#include "js_errors.h"

namespace dynamoe {

namespace {

// Values dequantized on the JS thread at most: about a millisecond of work, so the event loop never waits long.
constexpr size_t kMaxValues = size_t{1} << 22;
constexpr size_t kMaxProductTerms = size_t{1} << 26;  // quantMatmul's m * n * k

// Quantizes rows on a worker thread into a Uint8Array made on the JS thread.
class QuantizeWorker : public PromiseWorker {
 public:
  QuantizeWorker(Napi::Env env, QuantType type, MatrixSource source, Napi::Object sourceArray, int rows, int cols)
      : PromiseWorker(env), type_(type), source_(source), sourceRef_(Napi::Persistent(sourceArray)), rows_(rows),
        cols_(cols) {
    Napi::Uint8Array out = Napi::Uint8Array::New(env, static_cast<size_t>(rows) * quantRowBytes(type, cols));
    out_ = out.Data();
    result_ = Napi::Persistent(out.As<Napi::Object>());
  }

 protected:
  void run() override {
    std::vector<float> row(cols_);
    const size_t rowBytes = quantRowBytes(type_, cols_);
    for (int r = 0; r < rows_; ++r) {
      const size_t first = static_cast<size_t>(r) * cols_;
      for (int c = 0; c < cols_; ++c) row[c] = loadAsF32(source_.data, first + c, source_.dtype);
      quantizeRow(type_, row.data(), cols_, out_ + r * rowBytes);
    }
  }
  Napi::Value result(Napi::Env) override { return result_.Value(); }

 private:
  QuantType type_;
  MatrixSource source_;
  Napi::ObjectReference sourceRef_;  // keeps the source alive while the worker reads it
  int rows_, cols_;
  uint8_t* out_ = nullptr;
  Napi::ObjectReference result_;
};

}  // namespace

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const QuantType type = requireQuantType(info[0], "type");
  if (!canQuantize(type)) {
    throwJs(env, code::kUnsupported,
            std::string("dynamoe writes q8_0, q4_0, q4_k and q6_k; it reads ") + quantTraits(type).name + " only");
  }
  Napi::Object shape = Napi::Object::New(env);
  shape.Set("rows", info[2]);
  shape.Set("cols", info[3]);
  const int rows = readInt(shape, "rows", 1, 1 << 30);
  const int cols = readInt(shape, "cols", 1, 1 << 30);
  if (cols % quantTraits(type).blockElements != 0) {
    throwJs(env, code::kShape,
            "cols (" + std::to_string(cols) + ") must be a multiple of the " + quantTraits(type).name +
                " block size " + std::to_string(quantTraits(type).blockElements));
  }
  DType dtype = DType::F32;
  if (info[4].IsString() && !parseDType(info[4].As<Napi::String>().Utf8Value(), &dtype)) {
    throwJs(env, code::kDtype, "dtype must be 'f32', 'f16' or 'bf16'");
  }
  const MatrixSource source = requireWeights(info[1], rows, cols, dtype, "data");
  if (source.quant != QuantType::None) throwJs(env, code::kType, "data must be f32 or 16-bit values, not blocks");
  auto* worker = new QuantizeWorker(env, type, source, info[1].As<Napi::Object>(), rows, cols);
  return worker->start();
}

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

Napi::Value QuantMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const QuantType type = requireQuantType(info[0], "type");
  const QuantTraits traits = quantTraits(type);
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throwJs(env, code::kType, "weights must be a Uint8Array of quantized blocks, got " + describe(info[1]));
  }
  if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throwJs(env, code::kType, "input must be a Float32Array, got " + describe(info[4]));
  }
  Napi::Object shape = Napi::Object::New(env);
  shape.Set("n", info[2]);
  shape.Set("k", info[3]);
  shape.Set("m", info[5]);
  const int n = readInt(shape, "n", 1, 1 << 16);
  const int k = readInt(shape, "k", 1, 1 << 16);
  const int m = readInt(shape, "m", 1, 1 << 12);
  if (k % traits.blockElements != 0) {
    throwJs(env, code::kShape, "k must be a multiple of the " + std::string(traits.name) + " block size");
  }
  // A test hook on the JS thread: bounded like dequantize, so it cannot hold the event loop for long.
  if (static_cast<size_t>(m) * n * k > kMaxProductTerms) {
    throwJs(env, code::kShape, "quantMatmul takes at most 2^26 multiply-adds (m * n * k); models run theirs off the "
                               "event loop");
  }
  Napi::Uint8Array weights = info[1].As<Napi::Uint8Array>();
  Napi::Float32Array input = info[4].As<Napi::Float32Array>();
  if (weights.ElementLength() != static_cast<size_t>(n) * quantRowBytes(type, k)) {
    throwJs(env, code::kShape, "weights must hold n rows of k values");
  }
  if (input.ElementLength() != static_cast<size_t>(m) * k) throwJs(env, code::kShape, "input must hold m rows of k values");
  const Backend& backend = backendForDevice(info[6]);
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(m) * n);
  translateErrors(env, [&] {
    backend.requireUsable();
    backend.quantMatmul(type, weights.Data(), n, k, input.Data(), m, out.Data());
  });
  return out;
}

}  // namespace dynamoe
