#include "backends.h"

#include <string>

#include "../../cuda/cuda_backend.h"
#include "../cpu/cpu_backend.h"
#include "js_errors.h"

namespace dynamoe {

const Backend& backendForDevice(const Napi::Value& device, const char* fallback) {
  const std::string name = device.IsUndefined() ? fallback : device.IsString() ? device.As<Napi::String>().Utf8Value() : "";
  if (name == "cpu") return cpu::cpuBackend();
  if (name == "cuda") return cuda::cudaBackend();
  throwJs(device.Env(), code::kValue, "device must be 'cpu' or 'cuda'");
}

}  // namespace dynamoe
