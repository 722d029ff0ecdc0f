#include "runtime_binding.h"

#include <string>

#include "../../cuda/cuda_backend.h"
#include "../cpu/cpu_features.h"
#include "../cpu/quant_int.h"
#include "../cpu/roofline.h"
#include "../cpu/tile_kernels.h"
#include "js_errors.h"
#include "promise_worker.h"
#include "../cpu/thread_pool.h"

namespace dynamoe {

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(n >= 1 && n <= 1024 && static_cast<int>(n) == n)) {
    throwJs(env, code::kShape, "threads must be an integer in [1, 1024]");
  }
  cpuThreadPool().resize(static_cast<int>(n));
  return env.Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cpuThreadPool().threads());
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cpu::CpuFeatures& features = cpu::cpuFeatures();
  Napi::Object result = Napi::Object::New(env);
  result.Set("isa", cpu::isaName(cpu::activeTileKernels().isa));
  Napi::Array supported = Napi::Array::New(env);
  uint32_t n = 0;
  for (cpu::Isa isa : {cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::Avx512, cpu::Isa::Avx512Bf16}) {
    if (cpu::isaSupported(isa)) supported.Set(n++, cpu::isaName(isa));
  }
  result.Set("supportedIsas", supported);
  Napi::Object flags = Napi::Object::New(env);
  flags.Set("avx2", features.avx2);
  flags.Set("avx512", features.avx512);
  flags.Set("avx512bf16", features.avx512bf16);
  flags.Set("avx512vnni", features.avx512vnni);
  flags.Set("avxvnni", features.avxvnni);
  result.Set("features", flags);
  result.Set("quantActivations", cpu::quantIntegerDots() ? "q8" : "f32");
  result.Set("threads", cpuThreadPool().threads());
  return result;
}

namespace {
class RooflineWorker : public PromiseWorker {
 public:
  RooflineWorker(Napi::Env env, cpu::Isa isa) : PromiseWorker(env), isa_(isa) {}

 protected:
  void run() override { roofline_ = cpu::measureRoofline(isa_); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    result.Set("isa", cpu::isaName(isa_));
    result.Set("threads", cpuThreadPool().threads());
    result.Set("fmaGflops", roofline_.fmaGflops);
    result.Set("readGBps", roofline_.readGBps);
    result.Set("bf16DotGflops", roofline_.bf16DotGflops);
    return result;
  }

 private:
  cpu::Isa isa_;
  cpu::Roofline roofline_;
};
}  // namespace

Napi::Value MeasureRoofline(const Napi::CallbackInfo& info) {
  auto* worker = new RooflineWorker(info.Env(), cpu::activeTileKernels().isa);
  return worker->start();
}

Napi::Value SetCpuIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cpu::Isa isa;
  if (!info[0].IsString() || !cpu::parseIsa(info[0].As<Napi::String>().Utf8Value(), &isa)) {
    throwJs(env, code::kType, "isa must be 'scalar', 'avx2' or 'avx512'");
  }
  translateErrors(env, [&] { cpu::setActiveIsa(isa); });
  return env.Undefined();
}

Napi::Value SetQuantActivations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string mode = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (mode != "q8" && mode != "f32") throwJs(env, code::kType, "quantized activations must be 'q8' or 'f32'");
  cpu::setQuantIntegerDots(mode == "q8");
  return env.Undefined();
}

Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::BackendStatus& status = cuda::backendStatus();
  Napi::Object result = Napi::Object::New(env);
  result.Set("backend", status.available ? "cuda" : "cpu");
  result.Set("cudaBuilt", status.built);
  result.Set("cudaWholeModels", status.available && status.wholeModels);
  if (!status.available) {
    result.Set("cudaError", status.error);
    result.Set("cudaErrorMessage", status.errorMessage);
  }
  if (status.built) {
    result.Set("cudaRuntimeVersion", status.runtimeVersion);
    result.Set("cudaDriverVersion", status.driverVersion);
  }
  Napi::Array architectures = Napi::Array::New(env, status.architectures.size());
  for (size_t i = 0; i < status.architectures.size(); ++i) architectures.Set(static_cast<uint32_t>(i), status.architectures[i]);
  result.Set("cudaArchitectures", architectures);
  size_t freeBytes = 0;
  size_t totalBytes = 0;
  bool haveMemory = false;
  translateErrors(env, [&] { haveMemory = cuda::deviceMemoryNow(&freeBytes, &totalBytes); });
  if (haveMemory) {
    result.Set("cudaFreeMemoryBytes", static_cast<double>(freeBytes));
    result.Set("cudaTotalMemoryBytes", static_cast<double>(totalBytes));
  }
  if (!status.deviceName.empty()) {
    Napi::Object gpu = Napi::Object::New(env);
    gpu.Set("name", status.deviceName);
    gpu.Set("computeCapability", std::to_string(status.computeMajor) + "." + std::to_string(status.computeMinor));
    gpu.Set("multiprocessors", status.multiprocessors);
    gpu.Set("memoryBytes", static_cast<double>(status.totalMemoryBytes));
    result.Set("gpu", gpu);
  }
  return result;
}

}  // namespace dynamoe
